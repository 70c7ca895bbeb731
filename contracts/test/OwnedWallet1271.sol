// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ECDSA} from "solady/utils/ECDSA.sol";

// A test wallet makes calls as a channel participant on purpose.
// solhint-disable avoid-low-level-calls

/// @title OwnedWallet1271
/// @notice Test-only ERC-1271 smart account with one owner key: the owner makes it call anything
/// (`execute`, to open, deposit into or close a channel as this contract) and it accepts a signature over
/// a hash only if the owner's key made it (65-byte `r || s || v` or 64-byte EIP-2098 form).
contract OwnedWallet1271 {
    /// @dev The key whose signatures this wallet accepts and who may make it call.
    address public immutable OWNER;

    error NotOwner(address caller);

    constructor(address owner_) payable {
        OWNER = owner_;
    }

    receive() external payable {}

    /// @dev Makes a call as this wallet, sending `value` of its ETH; bubbles a revert.
    function execute(address target, uint256 value, bytes calldata data) external returns (bytes memory result) {
        if (msg.sender != OWNER) revert NotOwner(msg.sender);
        bool success;
        (success, result) = target.call{value: value}(data);
        if (!success) {
            assembly {
                revert(add(result, 0x20), mload(result))
            }
        }
    }

    /// @dev ERC-1271: the magic value `0x1626ba7e` for a signature of `hash` by the owner, else `0xffffffff`.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        address signer = ECDSA.tryRecoverCalldata(hash, signature);
        return signer == OWNER && signer != address(0) ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }
}
