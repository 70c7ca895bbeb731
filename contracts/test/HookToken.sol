// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "solady/tokens/ERC20.sol";

/// @title ITokenHook
/// @notice What `HookToken` calls after a transfer to a recipient with a hook.
interface ITokenHook {
    /// @dev Called by the token after `amount` moved from `from` to `to`; a revert reverts the transfer.
    function onTokenTransfer(address from, address to, uint256 amount) external;
}

/// @title HookToken
/// @notice Test-only ERC-20 with an ERC-777-style transfer hook: after `transfer` it calls
/// `onTokenTransfer` on the recipient when the recipient has code, or on the hook an account without
/// code registered for itself with `setHook` (as ERC-1820 lets an EOA name an implementer), and reverts
/// the transfer when the hook reverts or runs out of gas. `transferFrom` and `mint` call no hook, so
/// deposits into the channels contract work as with a plain token.
contract HookToken is ERC20 {
    /// @dev The hook called on transfers to an account without code (none while zero).
    mapping(address account => address hook) public hookOf;

    function name() public pure override returns (string memory) {
        return "Hook Token";
    }

    function symbol() public pure override returns (string memory) {
        return "HOOK";
    }

    /// @dev Mints `amount` to `to`; anyone may call it.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @dev Makes `hook` (zero for none) the hook of transfers to `msg.sender` while it has no code.
    function setHook(address hook) external {
        hookOf[msg.sender] = hook;
    }

    function transfer(address to, uint256 amount) public override returns (bool) {
        super.transfer(to, amount);
        address hook = to.code.length != 0 ? to : hookOf[to];
        if (hook != address(0)) ITokenHook(hook).onTokenTransfer(msg.sender, to, amount);
        return true;
    }
}
