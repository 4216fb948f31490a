// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The subset of FixtureTimelock the governor fixture calls.
interface IFixtureTimelock {
    function schedule(address target, uint256 value, bytes calldata data, bytes32 salt) external returns (bytes32);
    function cancel(bytes32 id) external;
    function getTimestamp(bytes32 id) external view returns (uint256);
    function isOperationDone(bytes32 id) external view returns (bool);
}
