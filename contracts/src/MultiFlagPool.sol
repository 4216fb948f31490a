// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title MultiFlagPool
/// @notice A pool that one call does not stop, modelled on three real shapes:
///         - Compound III's Comet: the pause guardian calls
///           `pause(bool supply, bool transfer, bool withdraw, bool absorb, bool buy)`;
///           the flags are read as an EigenLayer-style uint256 bitmap `pausedFlags()`
///           (bit 0 supply ... bit 4 buy).
///         - Balancer v2's Vault: `setPaused(bool)` stops swaps, read by
///           `getPausedState()(bool paused, uint256 pauseWindowEndTime, uint256 bufferPeriodEndTime)`;
///           pausing is only possible while the pause window is open (`PauseWindowExpired`,
///           Balancer's BAL#403, afterwards).
///         Test/drill fixture only: never deploy to mainnet.
contract MultiFlagPool {
    address private _pauseGuardian;
    uint256 private _flags;
    bool private _swapsPaused;
    uint256 private _pauseWindowEndTime;
    uint256 private _bufferPeriodEndTime;

    error Unauthorized(address caller);
    error PauseWindowExpired();

    event PauseAction(bool supplyPaused, bool transferPaused, bool withdrawPaused, bool absorbPaused, bool buyPaused);
    event PausedStateChanged(bool paused);

    constructor(address pauseGuardian_, uint256 pauseWindowDuration, uint256 bufferPeriodDuration) {
        _pauseGuardian = pauseGuardian_;
        _pauseWindowEndTime = block.timestamp + pauseWindowDuration;
        _bufferPeriodEndTime = _pauseWindowEndTime + bufferPeriodDuration;
    }

    modifier onlyGuardian() {
        if (msg.sender != _pauseGuardian) revert Unauthorized(msg.sender);
        _;
    }

    function pauseGuardian() external view returns (address) {
        return _pauseGuardian;
    }

    function pause(bool supplyPaused, bool transferPaused, bool withdrawPaused, bool absorbPaused, bool buyPaused)
        external
        onlyGuardian
    {
        _flags = (supplyPaused ? 1 : 0) | (transferPaused ? 2 : 0) | (withdrawPaused ? 4 : 0)
            | (absorbPaused ? 8 : 0) | (buyPaused ? 16 : 0);
        emit PauseAction(supplyPaused, transferPaused, withdrawPaused, absorbPaused, buyPaused);
    }

    function pausedFlags() external view returns (uint256) {
        return _flags;
    }

    function isSupplyPaused() external view returns (bool) {
        return _flags & 1 != 0;
    }

    function setPaused(bool paused_) external onlyGuardian {
        if (paused_ && block.timestamp > _pauseWindowEndTime) revert PauseWindowExpired();
        _swapsPaused = paused_;
        emit PausedStateChanged(paused_);
    }

    function getPausedState() external view returns (bool paused, uint256 pauseWindowEndTime, uint256 bufferPeriodEndTime) {
        return (_swapsPaused, _pauseWindowEndTime, _bufferPeriodEndTime);
    }
}
