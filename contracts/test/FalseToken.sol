// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "solady/tokens/ERC20.sol";

/// @title FalseToken
/// @notice Test-only ERC-20 whose `transfer` and `transferFrom` can be switched to return `false`
/// without moving anything (as some tokens do instead of reverting).
contract FalseToken is ERC20 {
    /// @dev Whether `transfer` returns false.
    bool public failTransfer;
    /// @dev Whether `transferFrom` returns false.
    bool public failTransferFrom;

    function name() public pure override returns (string memory) {
        return "False Token";
    }

    function symbol() public pure override returns (string memory) {
        return "FALSE";
    }

    /// @dev Mints `amount` to `to`; anyone may call it.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @dev Chooses which of `transfer` and `transferFrom` return false.
    function setFailing(bool transfer_, bool transferFrom_) external {
        failTransfer = transfer_;
        failTransferFrom = transferFrom_;
    }

    function transfer(address to, uint256 amount) public override returns (bool) {
        if (failTransfer) return false;
        return super.transfer(to, amount);
    }

    function transferFrom(address from, address to, uint256 amount) public override returns (bool) {
        if (failTransferFrom) return false;
        return super.transferFrom(from, to, amount);
    }
}
