// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title HostileWallet1271
/// @notice Test-only ERC-1271 participant that misbehaves in its `isValidSignature`, by `MODE`:
/// 0 returns garbage (a 32-byte word that is not the magic value, and extra bytes), 1 reverts with a
/// message, 2 burns every bit of gas it is given, 3 returns the magic value for any hash and signature.
contract HostileWallet1271 {
    /// @dev How `isValidSignature` misbehaves (see the contract's notice).
    uint256 public immutable MODE;

    constructor(uint256 mode_) {
        MODE = mode_;
    }

    error Refused();

    receive() external payable {}

    function isValidSignature(bytes32, bytes calldata) external view returns (bytes4) {
        uint256 m = MODE;
        if (m == 0) {
            assembly {
                mstore(0x00, 0x1626ba7f00000000000000000000000000000000000000000000000000000000)
                mstore(0x20, 0x1626ba7e00000000000000000000000000000000000000000000000000000000)
                return(0x00, 0x40)
            }
        }
        if (m == 1) revert Refused();
        if (m == 2) {
            while (true) {} // solhint-disable-line no-empty-blocks
        }
        return 0x1626ba7e;
    }
}
