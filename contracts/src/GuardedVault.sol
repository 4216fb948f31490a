// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {GuardianPausable} from "./GuardianPausable.sol";
import {IERC20} from "./IERC20.sol";

/// @title GuardedVault
/// @notice Single-token deposit vault with a guardian pause. `sweep` is the
///         admin-only path a compromised admin key would drain through, which is
///         what the incident drills race against. Test/drill fixture only: never
///         deploy to mainnet.
contract GuardedVault is GuardianPausable {
    // Plain storage, not immutable, so on-chain runtime code equals the artifact's deployedBytecode.
    IERC20 private _token;
    mapping(address account => uint256) private _balances;

    error ZeroAmount();
    error InsufficientBalance(uint256 balance, uint256 needed);
    error TokenTransferFailed();

    event Deposit(address indexed account, uint256 amount);
    event Withdraw(address indexed account, uint256 amount);
    event Sweep(address indexed caller, address indexed to, uint256 amount);

    constructor(address token_, address admin, address guardian) GuardianPausable(admin, guardian) {
        _token = IERC20(token_);
    }

    function token() external view returns (address) {
        return address(_token);
    }

    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    function totalAssets() public view returns (uint256) {
        return _token.balanceOf(address(this));
    }

    function deposit(uint256 amount) external whenNotPaused {
        if (amount == 0) revert ZeroAmount();
        _balances[msg.sender] += amount;
        if (!_token.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
        emit Deposit(msg.sender, amount);
    }

    function withdraw(uint256 amount) external whenNotPaused {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = _balances[msg.sender];
        if (balance < amount) revert InsufficientBalance(balance, amount);
        unchecked {
            _balances[msg.sender] = balance - amount;
        }
        if (!_token.transfer(msg.sender, amount)) revert TokenTransferFailed();
        emit Withdraw(msg.sender, amount);
    }

    /// @notice Send every token the vault holds to `to`. Depositor balances are
    ///         deliberately left untouched, so after a sweep they are unbacked.
    function sweep(address to) external onlyRole(DEFAULT_ADMIN_ROLE) whenNotPaused {
        uint256 amount = totalAssets();
        if (!_token.transfer(to, amount)) revert TokenTransferFailed();
        emit Sweep(msg.sender, to, amount);
    }
}
