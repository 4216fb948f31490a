// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {GuardianPausable} from "./GuardianPausable.sol";
import {IERC20} from "./IERC20.sol";
import {IPriceOracle} from "./IPriceOracle.sol";

/// @title LendingMarket
/// @notice Single-pair lending market: deposit one collateral token, borrow one
///         other token from the market's reserves (fund them by transferring the
///         borrow asset to the market), up to collateral * price / 1e18 *
///         collateralFactorBps / 10000. The price comes straight from the oracle,
///         so an inflated price lets a borrower take far more than the collateral
///         is worth: the oracle-manipulation drill. The guardian pause stops
///         deposits, withdrawals and borrows; repay deliberately stays open so
///         borrowers can reduce debt during an incident. No interest, no
///         liquidation. Test/drill fixture only: never deploy to mainnet.
contract LendingMarket is GuardianPausable {
    uint256 public constant BPS = 10_000;

    // Plain storage, not immutable, so on-chain runtime code equals the artifact's deployedBytecode.
    IERC20 private _collateral;
    IERC20 private _borrowAsset;
    IPriceOracle private _oracle;
    uint256 private _collateralFactorBps;
    uint256 private _totalBorrowed;
    mapping(address account => uint256) private _collateralOf;
    mapping(address account => uint256) private _debtOf;

    error ZeroAmount();
    error IdenticalAssets();
    error InvalidCollateralFactor(uint256 bps);
    error InsufficientCollateral(uint256 balance, uint256 needed);
    error BorrowLimitExceeded(uint256 debt, uint256 limit);
    error InsufficientReserves(uint256 available, uint256 needed);
    error RepayExceedsDebt(uint256 debt, uint256 amount);
    error TokenTransferFailed();

    event Deposit(address indexed account, uint256 amount);
    event Withdraw(address indexed account, uint256 amount);
    event Borrow(address indexed account, uint256 amount);
    event Repay(address indexed account, uint256 amount);

    constructor(
        address collateral_,
        address borrowAsset_,
        address oracle_,
        address admin,
        address guardian,
        uint256 collateralFactorBps_
    ) GuardianPausable(admin, guardian) {
        if (collateral_ == borrowAsset_) revert IdenticalAssets();
        if (collateralFactorBps_ > BPS) revert InvalidCollateralFactor(collateralFactorBps_);
        _collateral = IERC20(collateral_);
        _borrowAsset = IERC20(borrowAsset_);
        _oracle = IPriceOracle(oracle_);
        _collateralFactorBps = collateralFactorBps_;
    }

    function collateralToken() external view returns (address) {
        return address(_collateral);
    }

    function borrowAsset() external view returns (address) {
        return address(_borrowAsset);
    }

    function oracle() external view returns (address) {
        return address(_oracle);
    }

    function collateralFactorBps() external view returns (uint256) {
        return _collateralFactorBps;
    }

    function collateralOf(address account) external view returns (uint256) {
        return _collateralOf[account];
    }

    function debtOf(address account) external view returns (uint256) {
        return _debtOf[account];
    }

    function totalBorrowed() external view returns (uint256) {
        return _totalBorrowed;
    }

    /// @notice Borrow-asset balance the market holds and can lend out.
    function reserves() public view returns (uint256) {
        return _borrowAsset.balanceOf(address(this));
    }

    /// @notice Total debt `account` may carry at the current oracle price.
    function maxBorrow(address account) public view returns (uint256) {
        return _collateralOf[account] * _oracle.price() / 1e18 * _collateralFactorBps / BPS;
    }

    /// @notice maxBorrow * 1e18 / debt: below 1e18 the position is over its limit.
    ///         type(uint256).max when the account has no debt.
    function healthFactor(address account) external view returns (uint256) {
        uint256 debt = _debtOf[account];
        if (debt == 0) return type(uint256).max;
        return maxBorrow(account) * 1e18 / debt;
    }

    function depositCollateral(uint256 amount) external whenNotPaused {
        if (amount == 0) revert ZeroAmount();
        _collateralOf[msg.sender] += amount;
        if (!_collateral.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
        emit Deposit(msg.sender, amount);
    }

    function withdrawCollateral(uint256 amount) external whenNotPaused {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = _collateralOf[msg.sender];
        if (balance < amount) revert InsufficientCollateral(balance, amount);
        unchecked {
            _collateralOf[msg.sender] = balance - amount;
        }
        _requireWithinLimit(msg.sender, _debtOf[msg.sender]);
        if (!_collateral.transfer(msg.sender, amount)) revert TokenTransferFailed();
        emit Withdraw(msg.sender, amount);
    }

    function borrow(uint256 amount) external whenNotPaused {
        if (amount == 0) revert ZeroAmount();
        uint256 debt = _debtOf[msg.sender] + amount;
        _requireWithinLimit(msg.sender, debt);
        uint256 available = reserves();
        if (available < amount) revert InsufficientReserves(available, amount);
        _debtOf[msg.sender] = debt;
        _totalBorrowed += amount;
        if (!_borrowAsset.transfer(msg.sender, amount)) revert TokenTransferFailed();
        emit Borrow(msg.sender, amount);
    }

    /// @notice Repay the caller's own debt. Not gated by the pause on purpose:
    ///         reducing debt must stay possible while the market is stopped.
    function repay(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 debt = _debtOf[msg.sender];
        if (amount > debt) revert RepayExceedsDebt(debt, amount);
        unchecked {
            _debtOf[msg.sender] = debt - amount;
            _totalBorrowed -= amount;
        }
        if (!_borrowAsset.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
        emit Repay(msg.sender, amount);
    }

    function _requireWithinLimit(address account, uint256 debt) private view {
        uint256 limit = maxBorrow(account);
        if (debt > limit) revert BorrowLimitExceeded(debt, limit);
    }
}
