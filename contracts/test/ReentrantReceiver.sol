// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

// An attacker/test double calls arbitrary contracts on purpose.
// solhint-disable avoid-low-level-calls, no-complex-fallback

/// @title ReentrantReceiver
/// @notice Test-only channel participant that, when it receives ETH, calls back into a target contract
/// (the channels contract) with calldata chosen in advance: a payout recipient trying to re-enter
/// `settle`, `claim`, `closeWithoutState`, ... It emits what the re-entry returned, then accepts the
/// ETH, or reverts when `rejectAfter` is set (so the payout fails and is deferred).
contract ReentrantReceiver {
    /// @dev The contract re-entered on receiving ETH (none while zero).
    address public target;
    /// @dev The calldata of the re-entry.
    bytes public attack;
    /// @dev Whether `receive` reverts after the re-entry attempt.
    bool public rejectAfter;
    /// @dev How many re-entries were attempted.
    uint256 public attempts;

    /// @dev A re-entry was attempted; `result` is what it returned (its revert data when it failed).
    /// An event, not storage: a pushed payout forwards only 100k gas, too little to store revert data.
    event ReentryAttempted(bool success, bytes result);

    /// @dev Reverted with by `receive` when `rejectAfter` is set.
    error Rejected(uint256 amount);

    /// @dev Arms the re-entry: on the next incoming ETH, call `target_` with `data`.
    function setAttack(address target_, bytes calldata data, bool rejectAfter_) external {
        target = target_;
        attack = data;
        rejectAfter = rejectAfter_;
    }

    /// @dev Makes a call as this contract (to open a channel, claim, ...); bubbles a revert.
    function execute(address to, bytes calldata data) external payable returns (bytes memory result) {
        bool success;
        (success, result) = to.call{value: msg.value}(data);
        if (!success) {
            assembly {
                revert(add(result, 0x20), mload(result))
            }
        }
    }

    receive() external payable {
        address to = target;
        if (to == address(0)) return;
        target = address(0); // One attempt per arming: a successful re-entry must not recurse forever.
        ++attempts;
        (bool success, bytes memory result) = to.call(attack);
        emit ReentryAttempted(success, result);
        if (rejectAfter) revert Rejected(msg.value);
    }
}
