// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

// An attacker/test double calls arbitrary contracts on purpose.
// solhint-disable avoid-low-level-calls

/// @title RejectingReceiver
/// @notice Test-only channel participant whose `receive` reverts while `accepting` is false, used to
/// show that a failed payout is deferred to `claim` and never blocks the other party.
contract RejectingReceiver {
    /// @dev Whether incoming ETH is accepted.
    bool public accepting;

    /// @dev Reverted with on incoming ETH while not accepting.
    error Rejected(uint256 amount);

    /// @dev Turns accepting ETH on or off.
    function setAccepting(bool value) external {
        accepting = value;
    }

    /// @dev Starts a unilateral close (no signed state) of a channel this contract is part of.
    function closeWithoutState(address channels, bytes calldata channel) external {
        (bool success, bytes memory data) =
            channels.call(abi.encodePacked(bytes4(keccak256("closeWithoutState((address,address,address,uint32,uint64))")), channel));
        if (!success) _bubble(data);
    }

    /// @dev Collects this contract's deferred payout in `asset` to `to`.
    function claim(address channels, address asset, address to) external {
        (bool success, bytes memory data) =
            channels.call(abi.encodeWithSignature("claim(address,address)", asset, to));
        if (!success) _bubble(data);
    }

    receive() external payable {
        if (!accepting) revert Rejected(msg.value);
    }

    function _bubble(bytes memory data) private pure {
        assembly {
            revert(add(data, 0x20), mload(data))
        }
    }
}
