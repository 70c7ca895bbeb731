// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "solady/tokens/ERC20.sol";

/// @title FeeOnTransferToken
/// @notice Test-only ERC-20 that burns a fee of `FEE_BPS` basis points (rounded down) of every transfer:
/// the recipient gets less than `amount`, so a contract must credit what actually arrived.
contract FeeOnTransferToken is ERC20 {
    /// @dev The fee, in basis points of the amount moved.
    uint256 public constant FEE_BPS = 100;

    function name() public pure override returns (string memory) {
        return "Fee Token";
    }

    function symbol() public pure override returns (string memory) {
        return "FEE";
    }

    /// @dev Mints `amount` to `to`; anyone may call it.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function transfer(address to, uint256 amount) public override returns (bool) {
        _moveWithFee(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) public override returns (bool) {
        _spendAllowance(from, msg.sender, amount);
        _moveWithFee(from, to, amount);
        return true;
    }

    function _moveWithFee(address from, address to, uint256 amount) private {
        uint256 fee = amount * FEE_BPS / 10_000;
        _burn(from, fee);
        _transfer(from, to, amount - fee);
    }
}
