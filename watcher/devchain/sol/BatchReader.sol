// SPDX-License-Identifier: MIT
pragma solidity ^0.8.19;

/// @title BatchReader
/// @notice Read-only batch caller exposing Multicall3's aggregate3 ABI, deployed on local chains that
///         lack Multicall3 so that the watcher reads a whole check in one eth_call there as well.
contract BatchReader {
    struct Call3 {
        address target;
        bool allowFailure;
        bytes callData;
    }

    struct Result {
        bool success;
        bytes returnData;
    }

    struct Call {
        address target;
        bytes callData;
    }

    /// @notice Multicall's aggregate: all calls must succeed. Its encoding is ~15% smaller than aggregate3's
    ///         on the way in and ~40% smaller on the way out, which is what keeps big reads in one request.
    function aggregate(Call[] calldata calls) external payable returns (uint256 blockNumber, bytes[] memory returnData) {
        blockNumber = block.number;
        uint256 n = calls.length;
        returnData = new bytes[](n);
        for (uint256 i = 0; i < n; ++i) {
            (bool ok, bytes memory ret) = calls[i].target.call(calls[i].callData);
            require(ok, "BatchReader: call failed");
            returnData[i] = ret;
        }
    }

    function aggregate3(Call3[] calldata calls) external payable returns (Result[] memory results) {
        uint256 n = calls.length;
        results = new Result[](n);
        for (uint256 i = 0; i < n; ++i) {
            Call3 calldata c = calls[i];
            (bool ok, bytes memory ret) = c.target.call(c.callData);
            // Same contract as Multicall3: a failing call only aborts the batch when the caller asks for it.
            require(ok || c.allowFailure, "BatchReader: call failed");
            results[i] = Result(ok, ret);
        }
    }

    function getCurrentBlockTimestamp() external view returns (uint256) {
        return block.timestamp;
    }

    function getBlockNumber() external view returns (uint256) {
        return block.number;
    }
}
