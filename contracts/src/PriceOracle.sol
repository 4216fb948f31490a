// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {GuardianPausable} from "./GuardianPausable.sol";

/// @title PriceOracle
/// @notice Push price feed for the lending market fixture: a reporter sets the
///         price of one collateral unit in borrow-asset units (18 decimals). There
///         are deliberately no bounds, deviation checks or staleness limits: it is
///         the manipulable oracle the drills exploit. Pausing freezes the last
///         price (reads keep working). Test/drill fixture only: never deploy to mainnet.
contract PriceOracle is GuardianPausable {
    bytes32 public constant REPORTER_ROLE = keccak256("REPORTER_ROLE");

    // Plain storage, not immutable, so on-chain runtime code equals the artifact's deployedBytecode.
    uint256 private _price;
    uint256 private _updatedAt;

    event PriceUpdated(uint256 previous, uint256 price, address indexed reporter);

    constructor(address admin, address guardian, address reporter, uint256 initialPrice)
        GuardianPausable(admin, guardian)
    {
        _grant(REPORTER_ROLE, reporter);
        _price = initialPrice;
        _updatedAt = block.timestamp;
        emit PriceUpdated(0, initialPrice, msg.sender);
    }

    /// @notice Price of one collateral unit in borrow-asset units, 18 decimals.
    function price() external view returns (uint256) {
        return _price;
    }

    /// @notice block.timestamp of the last update.
    function updatedAt() external view returns (uint256) {
        return _updatedAt;
    }

    function setPrice(uint256 newPrice) external onlyRole(REPORTER_ROLE) whenNotPaused {
        emit PriceUpdated(_price, newPrice, msg.sender);
        _price = newPrice;
        _updatedAt = block.timestamp;
    }
}
