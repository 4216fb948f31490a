// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title GuardianPausable
/// @notice Minimal role registry plus an emergency pause switch, used by the
///         breakglass drill fixtures. A guardian can stop the contract; only an
///         admin can restart it. Test/drill fixture only: never deploy to mainnet.
abstract contract GuardianPausable {
    bytes32 public constant DEFAULT_ADMIN_ROLE = 0x00;
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");

    mapping(bytes32 role => mapping(address account => bool)) private _members;
    bool private _paused;

    error AccessControlUnauthorizedAccount(address account, bytes32 neededRole);
    error AccessControlBadConfirmation();
    error EnforcedPause();
    error ExpectedPause();

    event Paused(address account);
    event Unpaused(address account);
    event RoleGranted(bytes32 indexed role, address indexed account, address indexed sender);
    event RoleRevoked(bytes32 indexed role, address indexed account, address indexed sender);

    modifier onlyRole(bytes32 role) {
        _requireRole(role, msg.sender);
        _;
    }

    modifier whenNotPaused() {
        if (_paused) revert EnforcedPause();
        _;
    }

    modifier whenPaused() {
        if (!_paused) revert ExpectedPause();
        _;
    }

    constructor(address admin, address guardian) {
        _grant(DEFAULT_ADMIN_ROLE, admin);
        _grant(GUARDIAN_ROLE, guardian);
    }

    function hasRole(bytes32 role, address account) public view returns (bool) {
        return _members[role][account];
    }

    function paused() public view returns (bool) {
        return _paused;
    }

    function grantRole(bytes32 role, address account) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _grant(role, account);
    }

    function revokeRole(bytes32 role, address account) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _revoke(role, account);
    }

    /// @notice Drop a role held by the caller. `account` must equal msg.sender
    ///         (a confirmation against fat-fingering someone else's address).
    function renounceRole(bytes32 role, address account) external {
        if (account != msg.sender) revert AccessControlBadConfirmation();
        _revoke(role, account);
    }

    function pause() external onlyRole(GUARDIAN_ROLE) whenNotPaused {
        _paused = true;
        emit Paused(msg.sender);
    }

    function unpause() external onlyRole(DEFAULT_ADMIN_ROLE) whenPaused {
        _paused = false;
        emit Unpaused(msg.sender);
    }

    function _requireRole(bytes32 role, address account) internal view {
        if (!_members[role][account]) revert AccessControlUnauthorizedAccount(account, role);
    }

    function _grant(bytes32 role, address account) internal {
        if (!_members[role][account]) {
            _members[role][account] = true;
            emit RoleGranted(role, account, msg.sender);
        }
    }

    function _revoke(bytes32 role, address account) internal {
        if (_members[role][account]) {
            _members[role][account] = false;
            emit RoleRevoked(role, account, msg.sender);
        }
    }
}
