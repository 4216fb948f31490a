// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {GuardianPausable} from "./GuardianPausable.sol";

/// @title FixtureTimelock
/// @notice Minimal TimelockController for governance drills. A proposer schedules
///         a call; once `minDelay` has passed anyone may execute it. A canceller
///         (the guardian, and the governor once granted the role) can veto a
///         pending call. The guardian can only lengthen the delay; any other
///         change must go through the timelock itself. A cancelled or executed
///         id is final: re-scheduling the same call needs a new salt.
///         Test/drill fixture only: never deploy to mainnet.
contract FixtureTimelock is GuardianPausable {
    bytes32 public constant PROPOSER_ROLE = keccak256("PROPOSER_ROLE");
    bytes32 public constant CANCELLER_ROLE = keccak256("CANCELLER_ROLE");

    struct Operation {
        uint256 readyAt; // 0 = never scheduled
        bool done;
        bool cancelled;
    }

    // Plain storage, not immutable, so on-chain runtime code equals the artifact's deployedBytecode.
    uint256 private _minDelay;
    mapping(bytes32 id => Operation) private _operations;

    error OperationAlreadyScheduled(bytes32 id);
    error OperationNotScheduled(bytes32 id);
    error OperationNotReady(bytes32 id, uint256 readyAt);
    error OperationIsCancelled(bytes32 id);
    error OperationAlreadyDone(bytes32 id);
    error OperationNotPending(bytes32 id);
    error CallFailed(bytes32 id);
    error DelayNotExtended(uint256 current, uint256 requested);
    error TimelockUnauthorizedCaller(address caller);

    event CallScheduled(bytes32 indexed id, address target, uint256 value, bytes data, uint256 readyAt);
    event CallExecuted(bytes32 indexed id);
    event Cancelled(bytes32 indexed id);
    event MinDelayChange(uint256 oldDelay, uint256 newDelay);

    constructor(address admin, address guardian, uint256 minDelay_) GuardianPausable(admin, guardian) {
        _grant(CANCELLER_ROLE, guardian);
        _minDelay = minDelay_;
        emit MinDelayChange(0, minDelay_);
    }

    receive() external payable {}

    function minDelay() external view returns (uint256) {
        return _minDelay;
    }

    function hashOperation(address target, uint256 value, bytes calldata data, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(target, value, data, salt));
    }

    /// @notice Timestamp from which the operation may execute; 0 if never scheduled.
    ///         Kept after execution or cancellation (unlike OpenZeppelin's 1/0 markers).
    function getTimestamp(bytes32 id) external view returns (uint256) {
        return _operations[id].readyAt;
    }

    /// @notice Scheduled and neither executed nor cancelled (waiting or ready).
    function isOperationPending(bytes32 id) public view returns (bool) {
        Operation storage op = _operations[id];
        return op.readyAt != 0 && !op.done && !op.cancelled;
    }

    function isOperationReady(bytes32 id) external view returns (bool) {
        return isOperationPending(id) && block.timestamp >= _operations[id].readyAt;
    }

    function isOperationDone(bytes32 id) external view returns (bool) {
        return _operations[id].done;
    }

    function isOperationCancelled(bytes32 id) external view returns (bool) {
        return _operations[id].cancelled;
    }

    function schedule(address target, uint256 value, bytes calldata data, bytes32 salt)
        external
        onlyRole(PROPOSER_ROLE)
        whenNotPaused
        returns (bytes32 id)
    {
        id = hashOperation(target, value, data, salt);
        if (_operations[id].readyAt != 0) revert OperationAlreadyScheduled(id);
        uint256 readyAt = block.timestamp + _minDelay;
        _operations[id].readyAt = readyAt;
        emit CallScheduled(id, target, value, data, readyAt);
    }

    /// @notice Anyone may execute a ready operation. The call's revert data is bubbled up.
    function execute(address target, uint256 value, bytes calldata data, bytes32 salt)
        external
        payable
        whenNotPaused
    {
        bytes32 id = hashOperation(target, value, data, salt);
        Operation storage op = _operations[id];
        if (op.readyAt == 0) revert OperationNotScheduled(id);
        if (op.cancelled) revert OperationIsCancelled(id);
        if (op.done) revert OperationAlreadyDone(id);
        if (block.timestamp < op.readyAt) revert OperationNotReady(id, op.readyAt);
        // Marked before the call so the target cannot re-enter and run it twice.
        op.done = true;
        (bool ok, bytes memory returndata) = target.call{value: value}(data);
        if (!ok) {
            if (returndata.length == 0) revert CallFailed(id);
            assembly ("memory-safe") {
                revert(add(returndata, 32), mload(returndata))
            }
        }
        emit CallExecuted(id);
    }

    /// @notice The guardian's veto: cancel a scheduled, not yet executed operation.
    ///         Works while paused.
    function cancel(bytes32 id) external onlyRole(CANCELLER_ROLE) {
        if (!isOperationPending(id)) revert OperationNotPending(id);
        _operations[id].cancelled = true;
        emit Cancelled(id);
    }

    /// @notice Guardian escape hatch: lengthen the delay, never shorten it.
    function extendDelay(uint256 newDelay) external onlyRole(GUARDIAN_ROLE) {
        if (newDelay <= _minDelay) revert DelayNotExtended(_minDelay, newDelay);
        _setDelay(newDelay);
    }

    /// @notice Any delay change, only through a scheduled call of the timelock to itself.
    function updateDelay(uint256 newDelay) external {
        if (msg.sender != address(this)) revert TimelockUnauthorizedCaller(msg.sender);
        _setDelay(newDelay);
    }

    function _setDelay(uint256 newDelay) private {
        emit MinDelayChange(_minDelay, newDelay);
        _minDelay = newDelay;
    }
}
