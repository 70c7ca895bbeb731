// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

// A test double makes calls as a channel participant on purpose.
// solhint-disable avoid-low-level-calls

/// @title GasBurningReceiver
/// @notice Test-only channel participant (or an EOA's registered hook) whose `HookToken` transfer hook
/// burns `burn` gas in a loop before it returns: a recipient that would make every token payout to it
/// cost that much, unless the payer bounds the gas of the push.
contract GasBurningReceiver {
    /// @dev Gas each hook call burns (at least) before returning.
    uint256 public burn;
    /// @dev How many hook calls ran to completion.
    uint256 public completed;

    /// @dev Sets the gas each hook call burns.
    constructor(uint256 burn_) {
        burn = burn_;
    }

    /// @dev The `HookToken` hook: loops until `burn` gas is spent, then counts the call.
    function onTokenTransfer(address, address, uint256) external {
        uint256 start = gasleft();
        uint256 target = burn;
        while (start - gasleft() < target) {} // solhint-disable-line no-empty-blocks
        ++completed;
    }

    /// @dev Makes a call as this contract (to open a channel, close it, claim, ...); bubbles a revert.
    function execute(address to, bytes calldata data) external returns (bytes memory result) {
        bool success;
        (success, result) = to.call(data);
        if (!success) {
            assembly {
                revert(add(result, 0x20), mload(result))
            }
        }
    }
}
