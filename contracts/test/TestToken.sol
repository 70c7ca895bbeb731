// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "solady/tokens/ERC20.sol";

/// @title TestToken
/// @notice Test-only ERC-20 with open minting and an optional blocklist: `transfer` to a blocked
/// address returns `false` (like a token that blocklists accounts), or reverts when `revertOnBlock`.
contract TestToken is ERC20 {
    /// @dev Addresses that may not receive tokens.
    mapping(address => bool) public blocked;
    /// @dev Whether a transfer to a blocked address reverts (true) or returns false (false).
    bool public revertOnBlock;

    /// @dev Reverted with when `revertOnBlock` is set and the recipient is blocked.
    error RecipientBlocked(address to);

    function name() public pure override returns (string memory) {
        return "Test Token";
    }

    function symbol() public pure override returns (string memory) {
        return "TEST";
    }

    /// @dev Mints `amount` to `to`; anyone may call it.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @dev Blocks or unblocks `account` as a recipient.
    function setBlocked(address account, bool isBlocked) external {
        blocked[account] = isBlocked;
    }

    /// @dev Chooses between returning false and reverting for blocked recipients.
    function setRevertOnBlock(bool value) external {
        revertOnBlock = value;
    }

    function transfer(address to, uint256 amount) public override returns (bool) {
        if (blocked[to]) {
            if (revertOnBlock) revert RecipientBlocked(to);
            return false;
        }
        return super.transfer(to, amount);
    }
}
