// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

// ENS stand-ins
// Test stand-ins written for Margin Watcher, NOT the ENS contracts: a registry answering resolver(node) and a
// resolver answering addr(node), the two views the watcher calls, with the same names, arguments and return
// types, plus setters anyone may call so tests can point a name anywhere or nowhere. Left out of the real
// ENSRegistry and PublicResolver: owners, setSubnodeOwner and approvals (every setter is open), TTLs, records
// other than addr (multi-coin addr(node, coinType), text, contenthash, ABI, pubkey, interfaces), ENSIP-10
// wildcard resolution (resolve(bytes, bytes)), the NameWrapper, reverse records and events. Nodes are namehashes
// computed by the caller, as on the real registry.

/// @notice Stand-in ENS registry: node -> resolver address, settable by anyone.
contract EnsRegistryStandIn {
    mapping(bytes32 => address) internal resolvers;

    function resolver(bytes32 node) external view returns (address) {
        return resolvers[node];
    }

    function setResolver(bytes32 node, address resolver_) external {
        resolvers[node] = resolver_;
    }
}

/// @notice Stand-in public resolver: node -> ETH address, settable by anyone.
contract EnsResolverStandIn {
    mapping(bytes32 => address) internal addrs;

    function addr(bytes32 node) external view returns (address payable) {
        return payable(addrs[node]);
    }

    function setAddr(bytes32 node, address a) external {
        addrs[node] = a;
    }
}
