// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The price feed the lending market fixture reads.
interface IPriceOracle {
    /// @notice Price of one collateral unit in borrow-asset units, 18 decimals.
    function price() external view returns (uint256);
}
