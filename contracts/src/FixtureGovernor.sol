// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {GuardianPausable} from "./GuardianPausable.sol";
import {IERC20} from "./IERC20.sol";
import {IFixtureTimelock} from "./IFixtureTimelock.sol";

/// @title FixtureGovernor
/// @notice Minimal token-vote governor that queues passed proposals into a
///         FixtureTimelock (salt = bytes32(proposalId)); execution then goes
///         through the timelock's permissionless `execute`. Vote weight is the
///         voter's token balance at the moment of voting (no snapshots), which
///         is exactly the flash-loan / transfer-and-revote weakness governance
///         drills rehearse. The guardian can veto a proposal at any point before
///         execution; it needs PROPOSER_ROLE and CANCELLER_ROLE on the timelock.
///         Test/drill fixture only: never deploy to mainnet.
contract FixtureGovernor is GuardianPausable {
    /// @dev Returned by `state` as uint8: 0 Pending (created, quorum not reached),
    ///      1 Succeeded (quorum reached), 2 Queued (scheduled on the timelock),
    ///      3 Executed (the timelock ran it), 4 Vetoed (by the guardian).
    enum ProposalState {
        Pending,
        Succeeded,
        Queued,
        Executed,
        Vetoed
    }

    struct Proposal {
        address proposer; // address(0) = no such proposal
        address target;
        uint256 value;
        bytes data;
        uint256 forVotes;
        bytes32 operationId;
        bool queued;
        bool vetoed;
    }

    // Plain storage, not immutable, so on-chain runtime code equals the artifact's deployedBytecode.
    IERC20 private _token;
    IFixtureTimelock private _timelock;
    uint256 private _quorum;
    mapping(uint256 proposalId => Proposal) private _proposals;
    mapping(uint256 proposalId => mapping(address voter => bool)) private _hasVoted;

    error UnknownProposal(uint256 proposalId);
    error ProposalAlreadyExists(uint256 proposalId);
    error ProposerHasNoVotes(address proposer);
    error NoVotingPower(address voter);
    error AlreadyVoted(uint256 proposalId, address voter);
    error UnexpectedProposalState(uint256 proposalId, ProposalState current);
    error QuorumNotReached(uint256 forVotes, uint256 quorum);

    event ProposalCreated(
        uint256 proposalId, address proposer, address target, uint256 value, bytes data, string description
    );
    event VoteCast(address indexed voter, uint256 proposalId, uint256 weight);
    event ProposalQueued(uint256 proposalId, bytes32 operationId, uint256 readyAt);
    event ProposalVetoed(uint256 proposalId);

    constructor(address token_, address timelock_, address admin, address guardian, uint256 quorum_)
        GuardianPausable(admin, guardian)
    {
        _token = IERC20(token_);
        _timelock = IFixtureTimelock(timelock_);
        _quorum = quorum_;
    }

    function token() external view returns (address) {
        return address(_token);
    }

    function timelock() external view returns (address) {
        return address(_timelock);
    }

    /// @notice For-votes needed before a proposal can be queued.
    function quorum() external view returns (uint256) {
        return _quorum;
    }

    function hashProposal(address target, uint256 value, bytes calldata data, string calldata description)
        public
        pure
        returns (uint256)
    {
        return uint256(keccak256(abi.encode(target, value, data, keccak256(bytes(description)))));
    }

    function propose(address target, uint256 value, bytes calldata data, string calldata description)
        external
        whenNotPaused
        returns (uint256 proposalId)
    {
        if (_token.balanceOf(msg.sender) == 0) revert ProposerHasNoVotes(msg.sender);
        proposalId = hashProposal(target, value, data, description);
        Proposal storage p = _proposals[proposalId];
        if (p.proposer != address(0)) revert ProposalAlreadyExists(proposalId);
        p.proposer = msg.sender;
        p.target = target;
        p.value = value;
        p.data = data;
        // Same encoding as FixtureTimelock.hashOperation, so the id is known before queueing.
        p.operationId = keccak256(abi.encode(target, value, data, bytes32(proposalId)));
        emit ProposalCreated(proposalId, msg.sender, target, value, data, description);
    }

    /// @notice Vote for a proposal with the caller's current token balance, once per address.
    function castVote(uint256 proposalId) external whenNotPaused {
        ProposalState current = state(proposalId);
        if (current != ProposalState.Pending && current != ProposalState.Succeeded) {
            revert UnexpectedProposalState(proposalId, current);
        }
        if (_hasVoted[proposalId][msg.sender]) revert AlreadyVoted(proposalId, msg.sender);
        uint256 weight = _token.balanceOf(msg.sender);
        if (weight == 0) revert NoVotingPower(msg.sender);
        _hasVoted[proposalId][msg.sender] = true;
        _proposals[proposalId].forVotes += weight;
        emit VoteCast(msg.sender, proposalId, weight);
    }

    /// @notice Schedule a proposal that reached quorum on the timelock. Anyone may call.
    function queue(uint256 proposalId) external whenNotPaused {
        ProposalState current = state(proposalId);
        Proposal storage p = _proposals[proposalId];
        if (current == ProposalState.Pending) revert QuorumNotReached(p.forVotes, _quorum);
        if (current != ProposalState.Succeeded) revert UnexpectedProposalState(proposalId, current);
        p.queued = true;
        bytes32 id = _timelock.schedule(p.target, p.value, p.data, bytes32(proposalId));
        emit ProposalQueued(proposalId, id, _timelock.getTimestamp(id));
    }

    /// @notice Guardian veto: stop a proposal that has not executed yet, cancelling
    ///         its timelock operation if it was queued. Works while paused.
    function veto(uint256 proposalId) external onlyRole(GUARDIAN_ROLE) {
        ProposalState current = state(proposalId);
        if (current == ProposalState.Executed || current == ProposalState.Vetoed) {
            revert UnexpectedProposalState(proposalId, current);
        }
        Proposal storage p = _proposals[proposalId];
        p.vetoed = true;
        if (current == ProposalState.Queued) _timelock.cancel(p.operationId);
        emit ProposalVetoed(proposalId);
    }

    /// @notice 0 Pending, 1 Succeeded, 2 Queued, 3 Executed, 4 Vetoed (see ProposalState).
    ///         Reverts with UnknownProposal for an id never proposed.
    function state(uint256 proposalId) public view returns (ProposalState) {
        Proposal storage p = _proposals[proposalId];
        if (p.proposer == address(0)) revert UnknownProposal(proposalId);
        if (p.vetoed) return ProposalState.Vetoed;
        if (p.queued) {
            return _timelock.isOperationDone(p.operationId) ? ProposalState.Executed : ProposalState.Queued;
        }
        return p.forVotes >= _quorum ? ProposalState.Succeeded : ProposalState.Pending;
    }

    /// @notice The proposal's timelock operation id (known from creation on).
    function operationId(uint256 proposalId) external view returns (bytes32) {
        if (_proposals[proposalId].proposer == address(0)) revert UnknownProposal(proposalId);
        return _proposals[proposalId].operationId;
    }

    function proposalVotes(uint256 proposalId) external view returns (uint256 forVotes) {
        if (_proposals[proposalId].proposer == address(0)) revert UnknownProposal(proposalId);
        return _proposals[proposalId].forVotes;
    }

    function getProposal(uint256 proposalId)
        external
        view
        returns (address proposer, address target, uint256 value, bytes memory data)
    {
        Proposal storage p = _proposals[proposalId];
        if (p.proposer == address(0)) revert UnknownProposal(proposalId);
        return (p.proposer, p.target, p.value, p.data);
    }

    function hasVoted(uint256 proposalId, address voter) external view returns (bool) {
        return _hasVoted[proposalId][voter];
    }
}
