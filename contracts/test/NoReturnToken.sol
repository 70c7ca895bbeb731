// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title NoReturnToken
/// @notice Test-only ERC-20 whose `transfer` and `transferFrom` return nothing (like USDT on mainnet):
/// they revert on failure and return no value on success.
contract NoReturnToken {
    /// @dev Balances by holder.
    mapping(address => uint256) public balanceOf;
    /// @dev Allowances by holder and spender.
    mapping(address => mapping(address => uint256)) public allowance;
    /// @dev Sum of all balances.
    uint256 public totalSupply;

    /// @dev Emitted on every movement of tokens.
    event Transfer(address indexed from, address indexed to, uint256 amount);
    /// @dev Emitted when an allowance is set.
    event Approval(address indexed owner, address indexed spender, uint256 amount);

    /// @dev The sender holds less than `amount`.
    error InsufficientBalance(uint256 balance, uint256 amount);
    /// @dev The spender may move less than `amount`.
    error InsufficientAllowance(uint256 allowance, uint256 amount);

    /// @dev Mints `amount` to `to`; anyone may call it.
    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    /// @dev Lets `spender` move up to `amount` of the caller's tokens.
    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        emit Approval(msg.sender, spender, amount);
        return true;
    }

    /// @dev Moves `amount` to `to`; returns nothing.
    function transfer(address to, uint256 amount) external {
        _move(msg.sender, to, amount);
    }

    /// @dev Moves `amount` from `from` to `to` using the caller's allowance; returns nothing.
    function transferFrom(address from, address to, uint256 amount) external {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < amount) revert InsufficientAllowance(allowed, amount);
            allowance[from][msg.sender] = allowed - amount;
        }
        _move(from, to, amount);
    }

    function _move(address from, address to, uint256 amount) private {
        uint256 balance = balanceOf[from];
        if (balance < amount) revert InsufficientBalance(balance, amount);
        balanceOf[from] = balance - amount;
        balanceOf[to] += amount;
        emit Transfer(from, to, amount);
    }
}
