// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title GuardedBridgeConfig
/// @notice Modelled on Optimism's SuperchainConfig: a single guardian address
///         stops the system with `pause(string identifier)` (the identifier says
///         why, for the logs) and the rest of the system reads `paused()`.
///         Test/drill fixture only: never deploy to mainnet.
contract GuardedBridgeConfig {
    address private _guardian;
    bool private _paused;
    string private _identifier;

    error NotGuardian(address caller);
    error AlreadyPaused();
    error NotPaused();

    event Paused(string identifier);
    event Unpaused();

    constructor(address guardian_) {
        _guardian = guardian_;
    }

    modifier onlyGuardian() {
        if (msg.sender != _guardian) revert NotGuardian(msg.sender);
        _;
    }

    function guardian() external view returns (address) {
        return _guardian;
    }

    function paused() external view returns (bool) {
        return _paused;
    }

    function pauseIdentifier() external view returns (string memory) {
        return _identifier;
    }

    function pause(string memory identifier) external onlyGuardian {
        if (_paused) revert AlreadyPaused();
        _paused = true;
        _identifier = identifier;
        emit Paused(identifier);
    }

    function unpause() external onlyGuardian {
        if (!_paused) revert NotPaused();
        _paused = false;
        emit Unpaused();
    }
}
