// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {GuardianPausable} from "./GuardianPausable.sol";
import {IERC20} from "./IERC20.sol";

/// @title BridgeAdapter
/// @notice Destination side of a toy token bridge: a relayer releases tokens the
///         adapter holds, once per message id, subject to an hourly cap. The
///         guardian can pause it or tighten the cap. Test/drill fixture only:
///         never deploy to mainnet.
contract BridgeAdapter is GuardianPausable {
    bytes32 public constant RELAYER_ROLE = keccak256("RELAYER_ROLE");
    uint256 public constant RATE_LIMIT_WINDOW = 1 hours;

    // Plain storage, not immutable, so on-chain runtime code equals the artifact's deployedBytecode.
    IERC20 private _token;
    uint256 private _rateLimit;
    uint256 private _windowIndex;
    uint256 private _releasedInWindow;
    mapping(bytes32 messageId => bool) private _processed;

    error MessageAlreadyProcessed(bytes32 messageId);
    error RateLimitExceeded(uint256 requested, uint256 available);
    error TokenTransferFailed();

    event Released(bytes32 indexed messageId, address indexed to, uint256 amount);
    event RateLimitUpdated(uint256 previousLimit, uint256 newLimit, address indexed account);

    constructor(address token_, address admin, address guardian, address relayer, uint256 rateLimit_)
        GuardianPausable(admin, guardian)
    {
        _token = IERC20(token_);
        _grant(RELAYER_ROLE, relayer);
        _rateLimit = rateLimit_;
        emit RateLimitUpdated(0, rateLimit_, msg.sender);
    }

    function token() external view returns (address) {
        return address(_token);
    }

    /// @notice Maximum amount releasable per fixed one-hour window
    ///         (windows are aligned to block.timestamp / 3600).
    function rateLimit() external view returns (uint256) {
        return _rateLimit;
    }

    function processed(bytes32 messageId) external view returns (bool) {
        return _processed[messageId];
    }

    /// @notice Amount already released in the current window.
    function releasedInCurrentWindow() public view returns (uint256) {
        return _windowIndex == block.timestamp / RATE_LIMIT_WINDOW ? _releasedInWindow : 0;
    }

    /// @notice Amount that can still be released in the current window.
    function availableToRelease() public view returns (uint256) {
        uint256 used = releasedInCurrentWindow();
        return used >= _rateLimit ? 0 : _rateLimit - used;
    }

    function setRateLimit(uint256 newLimit) external {
        if (!hasRole(GUARDIAN_ROLE, msg.sender) && !hasRole(DEFAULT_ADMIN_ROLE, msg.sender)) {
            revert AccessControlUnauthorizedAccount(msg.sender, GUARDIAN_ROLE);
        }
        emit RateLimitUpdated(_rateLimit, newLimit, msg.sender);
        _rateLimit = newLimit;
    }

    function release(address to, uint256 amount, bytes32 messageId)
        external
        onlyRole(RELAYER_ROLE)
        whenNotPaused
    {
        if (_processed[messageId]) revert MessageAlreadyProcessed(messageId);
        uint256 used = releasedInCurrentWindow();
        uint256 available = used >= _rateLimit ? 0 : _rateLimit - used;
        if (amount > available) revert RateLimitExceeded(amount, available);

        _processed[messageId] = true;
        _windowIndex = block.timestamp / RATE_LIMIT_WINDOW;
        _releasedInWindow = used + amount;

        if (!_token.transfer(to, amount)) revert TokenTransferFailed();
        emit Released(messageId, to, amount);
    }
}
