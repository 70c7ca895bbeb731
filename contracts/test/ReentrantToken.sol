// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

// An attacker/test double calls arbitrary contracts on purpose.
// solhint-disable avoid-low-level-calls

import {ERC20} from "solady/tokens/ERC20.sol";

/// @title ReentrantToken
/// @notice Test-only ERC-20 with a transfer hook: after its next transfer (or `transferFrom`) it calls a
/// target contract with calldata chosen in advance, as an ERC-777-style token would call a hook. Used to
/// re-enter the channels contract while it pulls a deposit or pushes a payout. It emits what the
/// re-entry returned and, when `bubble` is set, reverts with it.
contract ReentrantToken is ERC20 {
    /// @dev The contract called by the hook (none while zero).
    address public target;
    /// @dev The calldata of the re-entry.
    bytes public attack;
    /// @dev Whether a failed re-entry makes the transfer revert with the re-entry's revert data.
    bool public bubble;
    /// @dev How many re-entries were attempted.
    uint256 public attempts;

    /// @dev A re-entry was attempted; `result` is what it returned (its revert data when it failed).
    event ReentryAttempted(bool success, bytes result);

    function name() public pure override returns (string memory) {
        return "Reentrant Token";
    }

    function symbol() public pure override returns (string memory) {
        return "REENTER";
    }

    /// @dev Mints `amount` to `to`; anyone may call it.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @dev Arms the hook: after the next transfer, call `target_` with `data`.
    function setAttack(address target_, bytes calldata data, bool bubble_) external {
        target = target_;
        attack = data;
        bubble = bubble_;
    }

    function _afterTokenTransfer(address, address, uint256) internal override {
        address to = target;
        if (to == address(0)) return;
        target = address(0); // One attempt per arming.
        ++attempts;
        (bool success, bytes memory result) = to.call(attack);
        emit ReentryAttempted(success, result);
        if (bubble && !success) {
            assembly {
                revert(add(result, 0x20), mload(result))
            }
        }
    }
}
