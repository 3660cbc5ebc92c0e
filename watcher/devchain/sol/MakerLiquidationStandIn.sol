// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

// Maker (dss) liquidation and helper stand-ins.
// Test stand-ins written for Margin Watcher, NOT MakerDAO's contracts, following the logic of dss's dog.sol,
// clip.sol, dss-cdp-manager's GetCdps.sol, dss-gem-joins' join-5.sol and ilk-registry's IlkRegistry.sol for
// what they include:
// - DogStandIn.bark: every require of the real bark in its order (live, not-unsafe, liquidation-limit-hit,
//   the partial-liquidation dust rules, null-auction), Vat.grab, Dirt/dirt bookkeeping and Clipper.kick.
//   Left out: Vow.fess (no vow), events, cage.
// - ClipperStandIn.kick: auth, the `stopped` breaker (kick needs stopped < 1), input checks, the feed price
//   from the Spotter's pip (peek must have a value: an OSM must have kissed the Clipper) and top > 0.
//   Left out: keeper incentives (tip, chip: no Vat.suck), take, redo, yank and the abacus.
// - GetCdpsStandIn: getCdpsAsc/getCdpsDesc walk the manager's list as GetCdps does.
// - GemJoinStandIn: join's conversion wad = amt * 10**(18 - dec) and Vat.slip; no token is transferred.
// - IlkRegistryStandIn: join(ilk) and dec(ilk) only, filled by an admin `put`.

import {VatStandIn, DssCdpManagerStandIn, RAY} from "./MakerStandIn.sol";

interface SpotterPipLike {
    function ilks(bytes32) external view returns (address pip, uint256 mat);
    function par() external view returns (uint256);
}

interface OsmPeekLike {
    function peek() external view returns (bytes32, bool);
}

/// Stand-in for dss's Clipper: the parts of kick that decide whether bark succeeds.
contract ClipperStandIn {
    struct Sale {
        uint256 tab; // [rad]
        uint256 lot; // [wad]
        address usr;
        uint96 tic;
        uint256 top; // [ray]
    }

    mapping(address => uint256) public wards;
    bytes32 public immutable ilk;
    VatStandIn public immutable vat;
    SpotterPipLike public spotter;
    address public dog;
    uint256 public buf; // [ray]
    uint256 public stopped; // 0: none; 1: no kick; 2: no kick or redo; 3: no kick, redo or take
    uint256 public kicks;
    mapping(uint256 => Sale) public sales;

    constructor(address vat_, address spotter_, address dog_, bytes32 ilk_) {
        vat = VatStandIn(vat_);
        spotter = SpotterPipLike(spotter_);
        dog = dog_;
        ilk = ilk_;
        buf = RAY;
        wards[msg.sender] = 1;
    }

    modifier auth() {
        require(wards[msg.sender] == 1, "Clipper/not-authorized");
        _;
    }

    modifier isStopped(uint256 level) {
        require(stopped < level, "Clipper/stopped-incorrect");
        _;
    }

    function rely(address usr) external auth {
        wards[usr] = 1;
    }

    function file(bytes32 what, uint256 data) external auth {
        if (what == "buf") buf = data;
        else if (what == "stopped") stopped = data;
        else revert("Clipper/file-unrecognized-param");
    }

    function kick(uint256 tab, uint256 lot, address usr, address) external auth isStopped(1) returns (uint256 id) {
        require(tab > 0, "Clipper/zero-tab");
        require(lot > 0, "Clipper/zero-lot");
        require(usr != address(0), "Clipper/zero-usr");
        id = ++kicks;
        (address pip,) = spotter.ilks(ilk);
        (bytes32 val, bool has) = OsmPeekLike(pip).peek();
        require(has, "Clipper/invalid-price");
        // top = rmul(rdiv(val * BLN, par), buf), each step floored
        uint256 top = (uint256(val) * 10 ** 9 * RAY / spotter.par()) * buf / RAY;
        require(top > 0, "Clipper/zero-top-price");
        sales[id] = Sale(tab, lot, usr, uint96(block.timestamp), top);
    }
}

/// Stand-in for dss's Dog (liquidation 2.0): ilks, Hole/Dirt and bark.
contract DogStandIn {
    struct Ilk {
        address clip;
        uint256 chop; // [wad]
        uint256 hole; // [rad]
        uint256 dirt; // [rad]
    }

    uint256 constant WAD = 10 ** 18;

    mapping(address => uint256) public wards;
    VatStandIn public immutable vat;
    mapping(bytes32 => Ilk) public ilks;
    uint256 public live;
    uint256 public Hole; // [rad]
    uint256 public Dirt; // [rad]

    constructor(address vat_) {
        vat = VatStandIn(vat_);
        live = 1;
        wards[msg.sender] = 1;
    }

    modifier auth() {
        require(wards[msg.sender] == 1, "Dog/not-authorized");
        _;
    }

    function rely(address usr) external auth {
        wards[usr] = 1;
    }

    function file(bytes32 what, uint256 data) external auth {
        require(what == "Hole", "Dog/file-unrecognized-param");
        Hole = data;
    }

    function file(bytes32 ilk, bytes32 what, uint256 data) external auth {
        if (what == "chop") {
            require(data >= WAD, "Dog/file-chop-lt-WAD");
            ilks[ilk].chop = data;
        } else if (what == "hole") {
            ilks[ilk].hole = data;
        } else {
            revert("Dog/file-unrecognized-param");
        }
    }

    function file(bytes32 ilk, bytes32 what, address clip) external auth {
        require(what == "clip", "Dog/file-unrecognized-param");
        ilks[ilk].clip = clip;
    }

    /// Stand-in admin: place Dirt and an ilk's dirt directly (what running auctions would hold).
    function setDirt(bytes32 ilk, uint256 Dirt_, uint256 dirt) external auth {
        Dirt = Dirt_;
        ilks[ilk].dirt = dirt;
    }

    function cage() external auth {
        live = 0;
    }

    function bark(bytes32 ilk, address urn, address kpr) external returns (uint256 id) {
        require(live == 1, "Dog/not-live");
        (uint256 ink, uint256 art) = vat.urns(ilk, urn);
        Ilk memory milk = ilks[ilk];
        uint256 dart;
        uint256 rate;
        uint256 dust;
        {
            uint256 spot;
            (, rate, spot,, dust) = vat.ilks(ilk);
            require(spot > 0 && ink * spot < art * rate, "Dog/not-unsafe");
            require(Hole > Dirt && milk.hole > milk.dirt, "Dog/liquidation-limit-hit");
            uint256 room = Hole - Dirt < milk.hole - milk.dirt ? Hole - Dirt : milk.hole - milk.dirt;
            dart = room * WAD / rate / milk.chop;
            if (dart > art) dart = art;
            if (art > dart) {
                if ((art - dart) * rate < dust) {
                    // a dusty remainder: the whole vault goes, a little over the limits
                    dart = art;
                } else {
                    require(dart * rate >= dust, "Dog/dusty-auction-from-partial-liquidation");
                }
            }
        }
        uint256 dink = ink * dart / art;
        require(dink > 0, "Dog/null-auction");
        require(dart <= 2 ** 255 && dink <= 2 ** 255, "Dog/overflow");
        vat.grab(ilk, urn, milk.clip, address(0), -int256(dink), -int256(dart));
        uint256 tab = dart * rate * milk.chop / WAD;
        Dirt += tab;
        ilks[ilk].dirt = milk.dirt + tab;
        id = ClipperStandIn(milk.clip).kick(tab, dink, urn, kpr);
    }
}

/// Stand-in for dss-cdp-manager's GetCdps: an owner's vaults in one call, first to last or last to first.
contract GetCdpsStandIn {
    function getCdpsAsc(address manager, address guy)
        external
        view
        returns (uint256[] memory ids, address[] memory urns, bytes32[] memory ilks)
    {
        return _walk(DssCdpManagerStandIn(manager), guy, true);
    }

    function getCdpsDesc(address manager, address guy)
        external
        view
        returns (uint256[] memory ids, address[] memory urns, bytes32[] memory ilks)
    {
        return _walk(DssCdpManagerStandIn(manager), guy, false);
    }

    function _walk(DssCdpManagerStandIn m, address guy, bool asc)
        internal
        view
        returns (uint256[] memory ids, address[] memory urns, bytes32[] memory ilks)
    {
        uint256 n = m.count(guy);
        ids = new uint256[](n);
        urns = new address[](n);
        ilks = new bytes32[](n);
        uint256 id = asc ? m.first(guy) : m.last(guy);
        for (uint256 i = 0; id > 0; i++) {
            ids[i] = id;
            urns[i] = m.urns(id);
            ilks[i] = m.ilks(id);
            (uint256 prev, uint256 next) = m.list(id);
            id = asc ? next : prev;
        }
    }
}

/// Stand-in for a GemJoin of a token with fewer than 18 decimals (dss-gem-joins' GemJoin5).
contract GemJoinStandIn {
    VatStandIn public immutable vat;
    bytes32 public immutable ilk;
    uint256 public immutable dec;
    uint256 public live;

    constructor(address vat_, bytes32 ilk_, uint256 dec_) {
        require(dec_ <= 18, "GemJoin/decimals-above-18");
        vat = VatStandIn(vat_);
        ilk = ilk_;
        dec = dec_;
        live = 1;
    }

    /// The join's conversion to the Vat's 18 decimals: wad = amt * 10**(18 - dec), no rounding inside.
    function join(address urn, uint256 amt) external {
        require(live == 1, "GemJoin/not-live");
        uint256 wad = amt * 10 ** (18 - dec);
        require(int256(wad) >= 0, "GemJoin/overflow");
        vat.slip(ilk, urn, int256(wad));
    }
}

/// Stand-in for the IlkRegistry: each ilk's GemJoin and its decimals.
contract IlkRegistryStandIn {
    address public immutable admin;
    mapping(bytes32 => address) public join;
    mapping(bytes32 => uint256) public dec;

    constructor() {
        admin = msg.sender;
    }

    function put(bytes32 ilk, address join_) external {
        require(msg.sender == admin, "IlkRegistry/not-authorized");
        join[ilk] = join_;
        dec[ilk] = GemJoinStandIn(join_).dec();
    }
}
