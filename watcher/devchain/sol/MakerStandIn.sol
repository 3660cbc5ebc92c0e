// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

// Maker (dss) stand-ins.
// Test stand-ins written for Margin Watcher, NOT MakerDAO's contracts: VatStandIn, SpotterStandIn,
// JugStandIn, OsmStandIn and DssCdpManagerStandIn expose the view ABI the watcher reads (same names,
// argument and return types) and replay dss's integer math (Spotter.poke, Jug.drip with rpow, the OSM's
// poke, stop and void), plus admin setters so tests can place any vault, rate or oracle price directly.
// OsmStandIn keeps the real OSM's storage layout (wards 0, stopped 1, src/hop/zzz packed in 2, cur 3,
// nxt 4, bud 5) because the watcher reads cur and nxt from storage, as the real OSM whitelists peek/peep.
// What the Vat stand-in leaves out: dai, sin, vice and debt balances (fold, grab and slip move only ilk
// rates, urns and gem balances), frob beyond a pure lock (`lock`: dink >= 0, dart = 0, with frob's dust
// rule), live/cage, and the ilk debt ceilings' checks. Dog, Clipper, GetCdps, GemJoin and IlkRegistry
// stand-ins are in MakerLiquidationStandIn.sol.

uint256 constant RAY = 10 ** 27;

/// Stand-in for dss's Vat: ilks and urns as the real Vat stores them; admin setters instead of frob/grab.
contract VatStandIn {
    struct Ilk {
        uint256 Art; // total normalised debt [wad]
        uint256 rate; // accumulated rate [ray]
        uint256 spot; // price with safety margin [ray]
        uint256 line; // debt ceiling [rad]
        uint256 dust; // urn debt floor [rad]
    }

    struct Urn {
        uint256 ink; // locked collateral [wad]
        uint256 art; // normalised debt [wad]
    }

    mapping(address => uint256) public wards;
    mapping(bytes32 => Ilk) public ilks;
    mapping(bytes32 => mapping(address => Urn)) public urns;
    mapping(bytes32 => mapping(address => uint256)) public gem; // free collateral [wad]

    constructor() {
        wards[msg.sender] = 1;
    }

    modifier auth() {
        require(wards[msg.sender] == 1, "VatStandIn/not-authorized");
        _;
    }

    function _add(uint256 x, int256 y) internal pure returns (uint256) {
        return y >= 0 ? x + uint256(y) : x - uint256(-y);
    }

    /// The Vat's grab as Dog.bark calls it: ink and art leave the urn, the gem goes to `v` (the Clipper).
    function grab(bytes32 i, address u, address v, address, int256 dink, int256 dart) external auth {
        Urn storage urn = urns[i][u];
        urn.ink = _add(urn.ink, dink);
        urn.art = _add(urn.art, dart);
        ilks[i].Art = _add(ilks[i].Art, dart);
        gem[i][v] = _add(gem[i][v], -dink);
    }

    /// The Vat's slip, as a GemJoin calls it when collateral is sent in (or taken out).
    function slip(bytes32 ilk, address usr, int256 wad) external auth {
        gem[ilk][usr] = _add(gem[ilk][usr], wad);
    }

    /// frob(i, u, u, u, dink, 0) for dink >= 0: lock the urn's own free gem. As frob, the urn must stay
    /// debt-free or at least dusty-free afterwards (Vat/dust); a pure lock needs no safety check.
    function lock(bytes32 i, address u, uint256 dink) external {
        require(msg.sender == u || wards[msg.sender] == 1, "VatStandIn/not-allowed-u");
        Urn storage urn = urns[i][u];
        gem[i][u] -= dink;
        urn.ink += dink;
        require(urn.art == 0 || urn.art * ilks[i].rate >= ilks[i].dust, "Vat/dust");
    }

    function rely(address usr) external auth {
        wards[usr] = 1;
    }

    function init(bytes32 ilk) external auth {
        require(ilks[ilk].rate == 0, "VatStandIn/ilk-already-init");
        ilks[ilk].rate = RAY;
    }

    /// The Vat's own file(ilk, what, data) for spot, line and dust (the Spotter pokes spot through it).
    function file(bytes32 ilk, bytes32 what, uint256 data) external auth {
        if (what == "spot") ilks[ilk].spot = data;
        else if (what == "line") ilks[ilk].line = data;
        else if (what == "dust") ilks[ilk].dust = data;
        else revert("VatStandIn/file-unrecognized-param");
    }

    /// The Vat's fold, as Jug.drip calls it (the stand-in keeps no dai balances, only the rate).
    function fold(bytes32 i, address, int256 rate_) external auth {
        Ilk storage ilk = ilks[i];
        ilk.rate = rate_ >= 0 ? ilk.rate + uint256(rate_) : ilk.rate - uint256(-rate_);
    }

    // --- stand-in admin setters (tests only)

    /// Place an urn directly, keeping the ilk's Art in step (the real Vat moves both in frob).
    function setUrn(bytes32 ilk, address urn, uint256 ink, uint256 art) external auth {
        Urn storage u = urns[ilk][urn];
        ilks[ilk].Art = ilks[ilk].Art - u.art + art;
        u.ink = ink;
        u.art = art;
    }

    function setRate(bytes32 ilk, uint256 rate_) external auth {
        ilks[ilk].rate = rate_;
    }
}

interface PipStandInLike {
    function peek() external view returns (bytes32, bool);
}

/// Stand-in for dss's Spotter: ilks (pip, mat), par, and poke with the real rounding.
contract SpotterStandIn {
    struct Ilk {
        address pip; // price feed (an OSM)
        uint256 mat; // liquidation ratio [ray]
    }

    mapping(address => uint256) public wards;
    mapping(bytes32 => Ilk) public ilks;
    VatStandIn public vat;
    uint256 public par; // ref per dai [ray]
    uint256 public live;

    constructor(address vat_) {
        wards[msg.sender] = 1;
        vat = VatStandIn(vat_);
        par = RAY;
        live = 1;
    }

    modifier auth() {
        require(wards[msg.sender] == 1, "SpotterStandIn/not-authorized");
        _;
    }

    function file(bytes32 ilk, bytes32 what, address pip_) external auth {
        require(what == "pip", "SpotterStandIn/file-unrecognized-param");
        ilks[ilk].pip = pip_;
    }

    function file(bytes32 what, uint256 data) external auth {
        require(what == "par", "SpotterStandIn/file-unrecognized-param");
        par = data;
    }

    function file(bytes32 ilk, bytes32 what, uint256 data) external auth {
        require(what == "mat", "SpotterStandIn/file-unrecognized-param");
        ilks[ilk].mat = data;
    }

    /// spot = rdiv(rdiv(val * 1e9, par), mat), each rdiv flooring x * RAY / y; 0 when the feed has no value.
    function poke(bytes32 ilk) external {
        (bytes32 val, bool has) = PipStandInLike(ilks[ilk].pip).peek();
        uint256 spot = has ? ((uint256(val) * 10 ** 9 * RAY) / par) * RAY / ilks[ilk].mat : 0;
        vat.file(ilk, "spot", spot);
    }
}

/// Stand-in for dss's Jug: per-ilk duty and rho, global base, and drip with the real rpow rounding.
contract JugStandIn {
    struct Ilk {
        uint256 duty; // per-second stability fee [ray]
        uint256 rho; // time of last drip
    }

    mapping(address => uint256) public wards;
    mapping(bytes32 => Ilk) public ilks;
    VatStandIn public vat;
    address public vow;
    uint256 public base; // global per-second fee [ray]

    constructor(address vat_) {
        wards[msg.sender] = 1;
        vat = VatStandIn(vat_);
    }

    modifier auth() {
        require(wards[msg.sender] == 1, "JugStandIn/not-authorized");
        _;
    }

    function init(bytes32 ilk) external auth {
        require(ilks[ilk].duty == 0, "JugStandIn/ilk-already-init");
        ilks[ilk] = Ilk(RAY, block.timestamp);
    }

    /// Unlike the real Jug this does not insist on a drip in the same block first: tests set fees directly.
    function file(bytes32 ilk, bytes32 what, uint256 data) external auth {
        require(what == "duty", "JugStandIn/file-unrecognized-param");
        ilks[ilk].duty = data;
    }

    function file(bytes32 what, uint256 data) external auth {
        require(what == "base", "JugStandIn/file-unrecognized-param");
        base = data;
    }

    /// x^n in base b, squaring and rounding half up at every step, as dss's rpow does (checked arithmetic).
    function rpow(uint256 x, uint256 n, uint256 b) public pure returns (uint256 z) {
        if (x == 0) return n == 0 ? b : 0;
        z = n % 2 == 1 ? x : b;
        uint256 half = b / 2;
        for (n /= 2; n > 0; n /= 2) {
            x = (x * x + half) / b;
            if (n % 2 == 1) z = (z * x + half) / b;
        }
    }

    /// rate' = rmul(rpow(base + duty, now - rho, RAY), rate), folded into the Vat; rho moves to now.
    function drip(bytes32 ilk) external returns (uint256 rate) {
        Ilk storage i = ilks[ilk];
        require(block.timestamp >= i.rho, "JugStandIn/invalid-now");
        (, uint256 prev,,,) = vat.ilks(ilk);
        rate = rpow(base + i.duty, block.timestamp - i.rho, RAY) * prev / RAY;
        vat.fold(ilk, vow, int256(rate) - int256(prev));
        i.rho = block.timestamp;
    }
}

/// Stand-in for the OSM: the real storage layout and poke rule; admin setters place cur and nxt directly.
contract OsmStandIn {
    struct Feed {
        uint128 val;
        uint128 has;
    }

    // Declaration order fixes the slots; it must stay that of osm.sol (see the contract notice above).
    mapping(address => uint256) public wards; // slot 0
    uint256 public stopped; // slot 1
    address public src; // slot 2, bytes 0..19
    uint16 public hop = 3600; // slot 2, bytes 20..21
    uint64 public zzz; // slot 2, bytes 22..29
    Feed internal cur; // slot 3
    Feed internal nxt; // slot 4
    mapping(address => uint256) public bud; // slot 5

    constructor(address src_) {
        wards[msg.sender] = 1;
        src = src_;
    }

    modifier auth() {
        require(wards[msg.sender] == 1, "OsmStandIn/not-authorized");
        _;
    }

    modifier toll() {
        require(bud[msg.sender] == 1, "OsmStandIn/contract-not-whitelisted");
        _;
    }

    function kiss(address a) external auth {
        bud[a] = 1;
    }

    function step(uint16 ts) external auth {
        require(ts > 0, "OsmStandIn/ts-is-zero");
        hop = ts;
    }

    function stop() external auth {
        stopped = 1;
    }

    function start() external auth {
        stopped = 0;
    }

    /// The OSM's void: both feeds emptied and the OSM stopped (governance's oracle kill switch).
    function void() external auth {
        cur = nxt = Feed(0, 0);
        stopped = 1;
    }

    function pass() public view returns (bool) {
        return block.timestamp >= uint256(zzz) + hop;
    }

    function peek() external view toll returns (bytes32, bool) {
        return (bytes32(uint256(cur.val)), cur.has == 1);
    }

    function peep() external view toll returns (bytes32, bool) {
        return (bytes32(uint256(nxt.val)), nxt.has == 1);
    }

    function read() external view toll returns (bytes32) {
        require(cur.has == 1, "OsmStandIn/no-current-value");
        return bytes32(uint256(cur.val));
    }

    // --- stand-in admin setters (tests only)

    /// The OSM's poke with the source's answer given by the admin: cur <- nxt, nxt <- val, zzz <- hour start.
    function push(uint128 val) external auth {
        require(stopped == 0, "OsmStandIn/is-stopped");
        require(pass(), "OsmStandIn/not-passed");
        cur = nxt;
        nxt = Feed(val, 1);
        zzz = uint64(block.timestamp - (block.timestamp % hop));
    }

    function setCur(uint128 val, uint128 has) external auth {
        cur = Feed(val, has);
    }

    function setNxt(uint128 val, uint128 has) external auth {
        nxt = Feed(val, has);
    }

    function setZzz(uint64 zzz_) external auth {
        zzz = zzz_;
    }
}

/// Stand-in for an UrnHandler: an address per vault, as the real manager creates one per cdp.
contract UrnHandlerStandIn {
    address public immutable manager;

    constructor() {
        manager = msg.sender;
    }
}

/// Stand-in for DssCdpManager: the real storage, view ABI and open/give list bookkeeping.
contract DssCdpManagerStandIn {
    struct List {
        uint256 prev;
        uint256 next;
    }

    address public vat;
    uint256 public cdpi;
    mapping(uint256 => address) public urns;
    mapping(uint256 => List) public list;
    mapping(uint256 => address) public owns;
    mapping(uint256 => bytes32) public ilks;
    mapping(address => uint256) public first;
    mapping(address => uint256) public last;
    mapping(address => uint256) public count;
    address public immutable admin;

    constructor(address vat_) {
        vat = vat_;
        admin = msg.sender;
    }

    function open(bytes32 ilk, address usr) public returns (uint256) {
        require(usr != address(0), "usr-address-0");
        cdpi += 1;
        urns[cdpi] = address(new UrnHandlerStandIn());
        owns[cdpi] = usr;
        ilks[cdpi] = ilk;
        if (first[usr] == 0) first[usr] = cdpi;
        if (last[usr] != 0) {
            list[cdpi].prev = last[usr];
            list[last[usr]].next = cdpi;
        }
        last[usr] = cdpi;
        count[usr] += 1;
        return cdpi;
    }

    /// The real give; the stand-in also lets its deployer move vaults, so tests need no owner keys.
    function give(uint256 cdp, address dst) public {
        address own = owns[cdp];
        require(msg.sender == own || msg.sender == admin, "cdp-not-allowed");
        require(dst != address(0), "dst-address-0");
        require(dst != own, "dst-already-owner");
        List storage l = list[cdp];
        if (l.prev != 0) list[l.prev].next = l.next;
        if (l.next != 0) list[l.next].prev = l.prev;
        else last[own] = l.prev;
        if (first[own] == cdp) first[own] = l.next;
        count[own] -= 1;

        owns[cdp] = dst;
        l.prev = last[dst];
        l.next = 0;
        if (last[dst] != 0) list[last[dst]].next = cdp;
        if (first[dst] == 0) first[dst] = cdp;
        last[dst] = cdp;
        count[dst] += 1;
    }
}
