// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ECDSA} from "solady/utils/ECDSA.sol";
import {EIP712} from "solady/utils/EIP712.sol";
import {ReentrancyGuardTransient} from "solady/utils/ReentrancyGuardTransient.sol";
import {SafeTransferLib} from "solady/utils/SafeTransferLib.sol";
import {SignatureCheckerLib} from "solady/utils/SignatureCheckerLib.sol";

/// @title PaymentChannels
/// @notice Many two-party payment channels (ETH or one ERC-20 each) held by one contract.
/// @dev What a caller should know:
/// - A channel's fixed parameters (`Channel`) are not stored: every call passes them as calldata and the
///   contract recomputes `channelId = keccak256(abi.encode(chainid, this, channel))`, which is the storage
///   key. Parameters that do not match an existing channel simply find no channel.
/// - Each channel takes exactly one storage slot. While open it holds both deposits; once closing it holds
///   the deadline, the recorded nonce and a 160-bit fingerprint of the record: the recorded outcome (payouts
///   before locks, locks, and a salt drawn when it was written), the channel's (now final) deposits and the
///   closer's nonce, which `challenge`, `proveRevoked` (as `Record`) and `settle` (as `Outcome` and the
///   rest) take back as calldata. The salt is unknown until the recording block, so no fingerprint
///   collision can be searched for in advance: forging a record needs a 160-bit preimage.
/// - A state commits to the deposits it splits (`depositA`, `depositB`, per side): its balances sum to
///   them, and each may be below the channel's deposit on that side (a deposit made after the state was
///   signed) but never above it (`UnknownDeposit`). What the state does not know of goes back to the side
///   that deposited it: the state pays `balanceA + channelDepositA - depositA` to A and likewise to B.
///   So a deposit, by anyone, never invalidates a state signed before it.
/// - Anyone may deposit for a participant, challenge with a newer doubly-signed state, or settle.
///   Only a participant may start a unilateral close.
/// - A challenge does not move the deadline: it is fixed when the close starts, so neither party can keep
///   the channel open by submitting state after state.
/// - A doubly-signed state marked final pays out at once: through `cooperativeClose` while open, or
///   through `challenge` while closing (so front-running a cooperative close with a stale unilateral
///   close gains nothing).
/// - Payouts are pushed with at most `PAYOUT_GAS` each (ETH and tokens alike); a payout that fails (a
///   recipient that rejects ETH, a token that returns false or reverts, a recipient or token transfer
///   hook that needs more gas) is credited to the recipient and collected later with `claim`, which
///   forwards all the gas it is given, so it never blocks the other party's payout nor makes settling
///   dearer than two bounded pushes.
/// - A participant's signature is checked by `ecrecover` first. Only if it recovers to someone else and
///   the participant has code is the participant asked by ERC-1271 (`isValidSignature(digest, r||s||v)`,
///   solady's `SignatureCheckerLib`, with at most `_ERC1271_GAS` gas): a smart account (a Safe with one
///   owner, an ERC-4337 account, an owner-signed wallet) can be either participant, and an EIP-7702
///   delegated EOA signs with its key as before (its own signature recovers to it; its delegate is asked
///   only for a signature that does not). A contract signature is revocable and is whatever the wallet
///   says: a wallet that accepts anything lets anyone sign as it (its counterparty could close with a
///   state paying itself everything), and a wallet that later refuses a signature it accepted makes that
///   state unusable on chain. A counterparty should accept a contract participant only if it trusts its
///   code to keep accepting what its owner signed.
/// - The secret registry (`revealSecret`, `revealSecrets`) is contract-wide and open to anyone: the first
///   reveal of a secret records its block timestamp under `sha256(secret)` for every channel; a repeated
///   reveal is a no-op, never a revert. It holds no funds and calls nothing but the SHA-256 precompile.
contract PaymentChannels is EIP712, ReentrancyGuardTransient {
    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                           TYPES                            */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev The fixed parameters of a channel; their hash (with chain id and this address) is its id.
    struct Channel {
        address participantA;
        address participantB;
        address asset;
        uint32 challengePeriod;
        uint64 number;
    }

    /// @dev A balance state. Signed by both participants as EIP-712 `State` (with the channel id).
    /// `balanceA + balanceB + lockedA + lockedB == depositA + depositB`: `lockedA` is what A has locked
    /// towards B in pending conditional payments (and vice versa), committed to by `locksRoot` (zero for
    /// no locks, else `keccak256` of the packed lock list, see `settle`). `withdrawals` is the channel's
    /// withdrawal counter the state was signed under: a state from before a withdrawal is refused.
    struct State {
        uint48 nonce;
        uint256 balanceA;
        uint256 balanceB;
        uint256 lockedA;
        uint256 lockedB;
        uint256 depositA;
        uint256 depositB;
        uint16 withdrawals;
        bytes32 locksRoot;
        bool isFinal;
    }

    /// @dev What settling a closing channel pays before its locks resolve: the recorded payouts (each
    /// balance plus the side's deposits the state did not know of), the recorded state's locked totals and
    /// locks root, and the salt drawn in the recording block. All from the last `ChannelClosed` or
    /// `ChallengeAccepted` event; `settle` passes it back.
    struct Outcome {
        uint256 balanceA;
        uint256 balanceB;
        uint256 lockedA;
        uint256 lockedB;
        bytes32 locksRoot;
        uint64 salt;
    }

    /// @dev A closing channel's record, as `challenge` and `proveRevoked` pass it back (the slot's
    /// fingerprint proves it): `outcomeHash = keccak256(abi.encode(outcome))`, the channel's `funds` as
    /// its open slot last held them (`[withdrawals:16][depositA:116][depositB:116]`, final once closing;
    /// from its `Deposited` and `Withdrawn` events) and the nonce the closer submitted (`ChannelClosed.nonce`: a challenge
    /// keeps it, so a proof of revocation still applies after one). Three words instead of the outcome's
    /// six plus three: a challenge replaces the outcome and never needs its parts.
    struct Record {
        bytes32 outcomeHash;
        uint256 funds;
        uint48 closerNonce;
    }

    /// @dev A withdrawal while open, signed by both as EIP-712 `Withdrawal` (with the channel id):
    /// `amountA` to A and `amountB` to B, taken out of the deposits `depositA`, `depositB` (those of the
    /// state signed with it), usable once (`withdrawals` is the channel's counter before it) until
    /// `expiry` (a timestamp, inclusive).
    struct Withdrawal {
        uint256 amountA;
        uint256 amountB;
        uint256 depositA;
        uint256 depositB;
        uint16 withdrawals;
        uint40 expiry;
    }

    /// @dev An EIP-2098 compact signature: `vs` holds `s` in its low 255 bits and `v - 27` in its top bit.
    /// A contract participant's signature is the same two words, passed to its `isValidSignature` as the
    /// 65 bytes `r || s || v` (what an owner-signed wallet or a one-owner Safe checks). Not `bytes`: a
    /// dynamic signature would cost every EOA call two more calldata words per signature and its length
    /// checks, for wallets (a Safe with several owners, a passkey account) whose signatures do not fit 65
    /// bytes; those can be a participant through an owner-signed wallet in front of them.
    struct Signature {
        bytes32 r;
        bytes32 vs;
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                       CUSTOM ERRORS                        */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev The counterparty is the zero address, the opener itself or this contract.
    error InvalidCounterparty(address counterparty);
    /// @dev The challenge period lies outside `[minimum, maximum]` seconds.
    error InvalidChallengePeriod(uint256 challengePeriod, uint256 minimum, uint256 maximum);
    /// @dev `msg.value` differs from what the call needs (the amount for ETH, zero for a token).
    error ValueMismatch(uint256 sent, uint256 expected);
    /// @dev A deposit of nothing.
    error ZeroDeposit();
    /// @dev The deposit would take a participant's total above `maximum`.
    error DepositTooLarge(uint256 current, uint256 added, uint256 maximum);
    /// @dev Pulling the token deposit from the depositor failed.
    error TokenTransferFailed(address token, address from, uint256 amount);
    /// @dev `account` is not a participant of channel `channelId`.
    error NotParticipant(bytes32 channelId, address account);
    /// @dev The channel does not exist or is not open.
    error ChannelNotOpen(bytes32 channelId);
    /// @dev The channel does not exist or is not in its challenge period or waiting for settlement.
    error ChannelNotClosing(bytes32 channelId);
    /// @dev A signature's `s` is in the upper half of the curve order (malleable).
    error MalleableSignature(bytes32 s);
    /// @dev The signature recovers to `recovered`, not to the participant `expected` (and `expected` has no
    /// code, or did not accept it by ERC-1271 within `_ERC1271_GAS`).
    error InvalidSignature(address expected, address recovered);
    /// @dev The state's balances do not add up to the deposits it splits (`total = depositA + depositB`).
    error BalancesNotConserved(uint256 balanceA, uint256 balanceB, uint256 total);
    /// @dev The state splits a deposit the channel does not hold: a side's `deposit` exceeds the
    /// channel's deposit on that side.
    error UnknownDeposit(uint256 depositA, uint256 depositB, uint256 channelDepositA, uint256 channelDepositB);
    /// @dev A state signed as final still has pending locks: a final state pays balances only.
    error FinalStateHasLocks(uint256 lockedA, uint256 lockedB, bytes32 locksRoot);
    /// @dev The state was signed under withdrawal counter `stateWithdrawals`; the channel's is
    /// `channelWithdrawals` (a state from before a withdrawal, or one whose withdrawal was not made).
    error WithdrawalCountMismatch(uint16 stateWithdrawals, uint16 channelWithdrawals);
    /// @dev The lock list passed to `settle` hashes to `computed`, not to the recorded `locksRoot`.
    error LocksMismatch(bytes32 locksRoot, bytes32 computed);
    /// @dev The closer was already proven to have closed with a revoked state.
    error ChannelPenalized(bytes32 channelId);
    /// @dev The closer's revocation covers nonces below `belowNonce`; it closed with `closerNonce`.
    error NotRevoked(uint48 closerNonce, uint48 belowNonce);
    /// @dev The withdrawal was signed for counter `submitted`; the channel's is `current` (replayed or
    /// superseded).
    error StaleWithdrawal(uint16 submitted, uint16 current);
    /// @dev The withdrawal expired at `expiry`; it is now `timestamp`.
    error WithdrawalExpired(uint256 expiry, uint256 timestamp);
    /// @dev The withdrawal takes more than the channel holds (`total = depositA + depositB`).
    error WithdrawalTooLarge(uint256 amountA, uint256 amountB, uint256 total);
    /// @dev The channel made its 65,535th withdrawal; close it to take more out.
    error WithdrawalLimitReached(bytes32 channelId);
    /// @dev `cooperativeClose` needs a state both signed as final.
    error StateNotFinal(uint48 nonce);
    /// @dev The submitted state is not newer than the recorded one.
    error StaleState(uint48 submittedNonce, uint48 recordedNonce);
    /// @dev The record passed in fingerprints to `passed`, not to the slot's `recorded` fingerprint.
    error RecordMismatch(bytes20 recorded, bytes20 passed);
    /// @dev The challenge period ended at `deadline`; it is now `timestamp`.
    error ChallengePeriodOver(uint256 deadline, uint256 timestamp);
    /// @dev The challenge period runs until `deadline` (inclusive); it is now `timestamp`.
    error ChallengePeriodActive(uint256 deadline, uint256 timestamp);
    /// @dev `account` has no deferred payout in `asset`.
    error NothingToClaim(address account, address asset);
    /// @dev Sending a claimed payout to `to` failed.
    error PayoutFailed(address to, address asset, uint256 amount);

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                           EVENTS                           */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev A channel was opened; its parameters are what later calls pass as `Channel`.
    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed participantA,
        address indexed participantB,
        address asset,
        uint32 challengePeriod,
        uint64 number
    );
    /// @dev `depositor` added `amount` for `participant`, whose total deposit is now `total`.
    event Deposited(
        bytes32 indexed channelId, address indexed participant, address depositor, uint256 amount, uint256 total
    );
    /// @dev `closer` started a unilateral close with the state `nonce`; settlement opens after `deadline`.
    /// `balanceA` .. `salt` are the record's `Outcome` (the payouts before locks, the locked totals, the
    /// locks root and the salt) and `nonce` is `Record.closerNonce`; `Record.funds` is what the channel's
    /// `Deposited` and `Withdrawn` events left (its deposits and withdrawal counter, final now).
    event ChannelClosed(
        bytes32 indexed channelId,
        address indexed closer,
        uint48 nonce,
        uint256 balanceA,
        uint256 balanceB,
        uint256 lockedA,
        uint256 lockedB,
        bytes32 locksRoot,
        uint64 salt,
        uint256 deadline
    );
    /// @dev A challenge replaced the recorded state with the newer state `nonce`, whose `Outcome` is
    /// `balanceA` .. `salt` (the record's funds and closer's nonce do not change). Who challenged is the
    /// transaction's sender; it is not needed to settle, so it is not logged.
    event ChallengeAccepted(
        bytes32 indexed channelId,
        uint48 nonce,
        uint256 balanceA,
        uint256 balanceB,
        uint256 lockedA,
        uint256 lockedB,
        bytes32 locksRoot,
        uint64 salt
    );
    /// @dev The closer `cheater` had revoked every nonce below `belowNonce` and closed with `closerNonce`:
    /// settling pays the whole channel to the other participant.
    event RevokedStateProven(bytes32 indexed channelId, address indexed cheater, uint48 closerNonce, uint48 belowNonce);
    /// @dev A withdrawal paid `amountA` to A and `amountB` to B while open; the channel's deposits are now
    /// `depositA`, `depositB` and its counter `withdrawals`.
    event Withdrawn(
        bytes32 indexed channelId,
        uint16 withdrawals,
        uint256 amountA,
        uint256 amountB,
        uint256 depositA,
        uint256 depositB
    );
    /// @dev The channel ended and its funds were paid out (`cooperative`: by a final state, at once).
    event ChannelSettled(
        bytes32 indexed channelId, uint48 nonce, uint256 payoutA, uint256 payoutB, bool cooperative
    );
    /// @dev Pushing `amount` to `recipient` failed; it was credited for `claim`.
    event PayoutDeferred(bytes32 indexed channelId, address indexed recipient, address asset, uint256 amount);
    /// @dev `account` collected its deferred payouts in `asset`, sent to `to`.
    event Claimed(address indexed account, address indexed asset, address to, uint256 amount);
    /// @dev `secret` was revealed for the first time: `revealedAt[hashlock]` (`hashlock = sha256(secret)`)
    /// now holds this block's timestamp.
    event SecretRevealed(bytes32 indexed hashlock, bytes32 secret);

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                         CONSTANTS                          */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev Shortest allowed challenge period, in seconds.
    uint256 public constant MIN_CHALLENGE_PERIOD = 1 hours;
    /// @dev Longest allowed challenge period, in seconds.
    uint256 public constant MAX_CHALLENGE_PERIOD = 30 days;
    /// @dev Largest total deposit of one participant (116 bits, so both and the withdrawal counter fit
    /// one slot): 8.3e34, above any token's supply in wei-like units.
    uint256 public constant MAX_DEPOSIT = (1 << 116) - 1;
    /// @dev Gas forwarded with a pushed payout, ETH or token: a recipient (or a token and the transfer
    /// hooks it calls) needing more is credited for `claim` instead, so no party can make settling a
    /// channel cost more than two bounded pushes. A plain ERC-20 `transfer` needs well under half of it.
    uint256 public constant PAYOUT_GAS = 100_000;
    /// @dev Gas given to a contract participant's ERC-1271 check (the self-call that runs solady's
    /// `isValidERC1271SignatureNow`; the wallet gets 63/64 of what is left of it): enough for an
    /// owner-signed wallet (~5,000), a Safe (~15,000 to 30,000 with its fallback handler) or an ERC-4337
    /// account with a nested ERC-7739 check, and a bound on what a wallet that burns gas can make a
    /// `close`, `challenge`, `cooperativeClose`, `withdraw` or `proveRevoked` cost its submitter: a
    /// wallet needing more is refused with `InvalidSignature`. Internal: no getter, so no new selector.
    uint256 internal constant _ERC1271_GAS = 100_000;
    /// @dev The EIP-712 type of a balance state.
    bytes32 public constant STATE_TYPEHASH = keccak256(
        "State(bytes32 channelId,uint48 nonce,uint256 balanceA,uint256 balanceB,uint256 lockedA,uint256 lockedB,uint256 depositA,uint256 depositB,uint16 withdrawals,bytes32 locksRoot,bool isFinal)"
    );
    /// @dev The EIP-712 type of a revocation: its signer promises never to close with a nonce below
    /// `belowNonce`.
    bytes32 public constant REVOCATION_TYPEHASH = keccak256("Revocation(bytes32 channelId,uint48 belowNonce)");
    /// @dev The EIP-712 type of a withdrawal while open.
    bytes32 public constant WITHDRAWAL_TYPEHASH = keccak256(
        "Withdrawal(bytes32 channelId,uint256 amountA,uint256 amountB,uint256 depositA,uint256 depositB,uint16 withdrawals,uint40 expiry)"
    );
    /// @dev Bytes per lock in `settle`'s packed list: direction (1: 0 A pays B, 1 B pays A), expiry (5),
    /// amount (32), hashlock (32).
    uint256 public constant LOCK_SIZE = 70;

    /// @dev Channel status, kept in the top byte of the channel's slot. Closing: 2 + the closer's side
    /// (0 A, 1 B); 2 more once the closer is proven to have closed with a revoked state.
    uint8 internal constant _STATUS_NONE = 0;
    uint8 internal constant _STATUS_OPEN = 1;
    uint8 internal constant _STATUS_CLOSING = 2;
    uint8 internal constant _STATUS_PENALIZED = 4;

    /// @dev `N/2` of secp256k1: a larger `s` is the malleable twin of a valid signature.
    uint256 internal constant _HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 internal constant _MASK_116 = (1 << 116) - 1;
    uint256 internal constant _MASK_160 = (1 << 160) - 1;
    uint256 internal constant _MASK_248 = (1 << 248) - 1;
    /// @dev solady's `ReentrancyGuardTransient` slot: `uint32(bytes4(keccak256("Reentrancy()"))) | 1 << 71`.
    uint256 internal constant _GUARD_SLOT = 0x8000000000ab143c06;

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                          STORAGE                           */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev Number given to the next channel. Starts at 1 so no open pays for a fresh slot.
    /// A contract-wide counter is also unique per pair, so a settled channel's id never returns.
    uint64 public nextChannelNumber;

    /// @dev One packed slot per channel:
    ///   open:    [status:8 = 1][withdrawals:16][depositA:116][depositB:116]
    ///   closing: [status:8 = 2..5][deadline:40][nonce:48][fingerprint:160]
    /// Closing status: 2 A closed, 3 B closed; 4 and 5 the same once the closer is proven to have closed
    /// with a state it revoked (`proveRevoked`). `nonce` is the recorded state's (the closer's or a newer
    /// challenger's). fingerprint = low 160 bits of keccak256(abi.encode(Record)), where `Record` holds
    /// keccak256(abi.encode(Outcome)) (the recorded payouts before locks, locked totals, locks root and a
    /// 64-bit salt from the recording block, `_salt`, so a record cannot be forged by a collision found in
    /// advance), the channel's deposits and withdrawal counter (which can no longer change once it is
    /// closing) and the closer's nonce. The caller passes the record back (from the events), as the
    /// fingerprint proves: two levels, so a challenge passes three words instead of nine.
    /// A settled channel's slot is cleared (its id is never reused).
    mapping(bytes32 channelId => uint256 packed) internal _channels;

    /// @dev Payouts whose push failed, by recipient and asset (address(0) is ETH).
    mapping(address account => mapping(address asset => uint256 amount)) public owed;

    /// @dev When each hashlock's secret was first revealed (`block.timestamp`; 0 if never), keyed by
    /// `sha256(secret)`. Contract-wide: one reveal counts for every channel holding that hashlock.
    mapping(bytes32 hashlock => uint256 timestamp) public revealedAt;

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                        CONSTRUCTOR                         */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev The EIP-712 domain separator of the deployment's chain, what every digest uses (see
    /// `_hashTypedData`).
    /// (mixedCase, as slither's `naming-convention` wants of an immutable; solhint wants SNAKE_CASE.)
    // solhint-disable-next-line immutable-vars-naming
    bytes32 internal immutable _deploymentSeparator;

    constructor() {
        nextChannelNumber = 1;
        _deploymentSeparator = _domainSeparator();
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                            OPEN                            */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev Opens a channel between `msg.sender` (participant A) and `counterparty` (participant B) in
    /// `asset` (address(0) for ETH), funding A's side with `amount` (ETH: `msg.value == amount`;
    /// token: pulled with `transferFrom`, credited by what arrives). `amount` may be zero.
    function open(address counterparty, address asset, uint32 challengePeriod, uint256 amount)
        external
        payable
        nonReentrant
        returns (bytes32 channelId)
    {
        bool refused;
        /// @solidity memory-safe-assembly
        assembly {
            // `counterparty` is the zero address, the opener or this contract (no short-circuit jumps: the
            // deployment stays under its gas target).
            refused := or(or(iszero(counterparty), eq(counterparty, caller())), eq(counterparty, address()))
        }
        if (refused) revert InvalidCounterparty(counterparty);
        if (challengePeriod < MIN_CHALLENGE_PERIOD || challengePeriod > MAX_CHALLENGE_PERIOD) {
            revert InvalidChallengePeriod(challengePeriod, MIN_CHALLENGE_PERIOD, MAX_CHALLENGE_PERIOD);
        }
        uint64 channelNumber = nextChannelNumber;
        unchecked {
            // A uint64 counter incremented once per transaction cannot wrap.
            nextChannelNumber = channelNumber + 1;
        }
        /// @solidity memory-safe-assembly
        assembly {
            // keccak256(abi.encode(chainid, this, Channel(msg.sender, counterparty, asset, period, number))),
            // as `_channelId` computes it from calldata.
            let m := mload(0x40)
            mstore(m, chainid())
            mstore(add(m, 0x20), address())
            mstore(add(m, 0x40), caller())
            mstore(add(m, 0x60), counterparty)
            mstore(add(m, 0x80), asset)
            mstore(add(m, 0xa0), challengePeriod)
            mstore(add(m, 0xc0), channelNumber)
            channelId := keccak256(m, 0xe0)
        }
        uint256 credited = amount == 0 ? _checkNoValue() : _pullDeposit(asset, amount);
        if (credited > MAX_DEPOSIT) revert DepositTooLarge(0, credited, MAX_DEPOSIT);
        _channels[channelId] = (uint256(_STATUS_OPEN) << 248) | (credited << 116);
        emit ChannelOpened(channelId, msg.sender, counterparty, asset, challengePeriod, channelNumber);
        if (credited != 0) emit Deposited(channelId, msg.sender, msg.sender, credited, credited);
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                          DEPOSIT                           */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev Adds `amount` to `participant`'s deposit in an open channel. Anyone may pay it.
    function deposit(Channel calldata channel, address participant, uint256 amount) external payable nonReentrant {
        bytes32 channelId = _channelId(channel);
        uint256 packed = _channels[channelId];
        if (packed >> 248 != _STATUS_OPEN) revert ChannelNotOpen(channelId);
        bool isA = participant == channel.participantA;
        if (!isA && participant != channel.participantB) revert NotParticipant(channelId, participant);
        if (amount == 0) revert ZeroDeposit();
        // Interaction before effect: the credit is what actually arrived (fee-on-transfer tokens).
        // `nonReentrant` and re-reading the slot below keep this safe; `close` is not guarded, so a token
        // hook may have closed the channel meanwhile: check its status again.
        uint256 credited = _pullDeposit(channel.asset, amount);
        packed = _channels[channelId];
        if (packed >> 248 != _STATUS_OPEN) revert ChannelNotOpen(channelId);
        uint256 shift = isA ? 116 : 0;
        uint256 current = (packed >> shift) & _MASK_116;
        if (credited > MAX_DEPOSIT - current) revert DepositTooLarge(current, credited, MAX_DEPOSIT);
        unchecked {
            // `current + credited <= MAX_DEPOSIT` fits its 116-bit field, so the add cannot carry.
            _channels[channelId] = packed + (credited << shift);
            emit Deposited(channelId, participant, msg.sender, credited, current + credited);
        }
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                     COOPERATIVE CLOSE                      */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev Pays out an open channel at once by a state both participants signed as final.
    /// Anyone holding both signatures may submit it.
    function cooperativeClose(
        Channel calldata channel,
        State calldata state,
        Signature calldata sigA,
        Signature calldata sigB
    ) external nonReentrant {
        bytes32 channelId = _channelId(channel);
        uint256 packed = _channels[channelId];
        if (packed >> 248 != _STATUS_OPEN) revert ChannelNotOpen(channelId);
        if (!state.isFinal) revert StateNotFinal(state.nonce);
        (uint256 payoutA, uint256 payoutB) = _checkState(channelId, channel, state, sigA, sigB, packed);
        delete _channels[channelId];
        emit ChannelSettled(channelId, state.nonce, payoutA, payoutB, true);
        _payout(channelId, channel.asset, channel.participantA, payoutA);
        _payout(channelId, channel.asset, channel.participantB, payoutB);
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                      WITHDRAW WHILE OPEN                   */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev Pays `withdrawal.amountA` to A and `withdrawal.amountB` to B out of an open channel, by a
    /// withdrawal both signed. Single use: it names the channel's withdrawal counter, which moves on, so a
    /// replay is stale, and every state signed before it (naming the old counter) stops being valid.
    /// The amounts come out of the deposits the withdrawal names (those of the state it was signed
    /// with; the channel's may be higher by later deposits, which stay with their side): each amount from
    /// its own side's deposit first, the rest from the other side's. Anyone may submit it.
    function withdraw(
        Channel calldata channel,
        Withdrawal calldata withdrawal,
        Signature calldata sigA,
        Signature calldata sigB
    ) external nonReentrant {
        bytes32 channelId = _channelId(channel);
        uint256 packed = _channels[channelId];
        if (packed >> 248 != _STATUS_OPEN) revert ChannelNotOpen(channelId);
        uint256 count = (packed >> 232) & 0xFFFF;
        if (count == 0xFFFF) revert WithdrawalLimitReached(channelId);
        if (withdrawal.withdrawals != count) revert StaleWithdrawal(withdrawal.withdrawals, uint16(count));
        if (block.timestamp > withdrawal.expiry) revert WithdrawalExpired(withdrawal.expiry, block.timestamp);
        uint256 channelDepositA = (packed >> 116) & _MASK_116;
        uint256 channelDepositB = packed & _MASK_116;
        uint256 takenA = withdrawal.depositA;
        uint256 takenB = withdrawal.depositB;
        if (takenA > channelDepositA || takenB > channelDepositB) {
            revert UnknownDeposit(takenA, takenB, channelDepositA, channelDepositB);
        }
        uint256 amountA = withdrawal.amountA;
        uint256 amountB = withdrawal.amountB;
        unchecked {
            // The named deposits are at most the channel's (< 2**116 each): no overflow anywhere below.
            uint256 total = takenA + takenB;
            if (amountA > total || amountB > total - amountA) revert WithdrawalTooLarge(amountA, amountB, total);
            // `taken*` become what is left of the named deposits: own side first, then the other side.
            if (amountA > takenA) (takenA, takenB) = (0, takenB - (amountA - takenA));
            else takenA -= amountA;
            if (amountB > takenB) (takenA, takenB) = (takenA - (amountB - takenB), 0);
            else takenB -= amountB;
            // New channel deposits: the channel's minus what left each side (named minus what is left).
            channelDepositA -= withdrawal.depositA - takenA;
            channelDepositB -= withdrawal.depositB - takenB;
            ++count;
        }
        _checkWithdrawalSigners(channelId, channel, withdrawal, sigA, sigB);
        _channels[channelId] = (uint256(_STATUS_OPEN) << 248) | (count << 232) | (channelDepositA << 116) | channelDepositB;
        emit Withdrawn(channelId, uint16(count), amountA, amountB, channelDepositA, channelDepositB);
        _payout(channelId, channel.asset, channel.participantA, amountA);
        _payout(channelId, channel.asset, channel.participantB, amountB);
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                      UNILATERAL CLOSE                      */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev A participant starts the challenge period with the latest doubly-signed state it holds.
    /// Closing with a nonce below one the closer revoked lets the other side take the whole channel
    /// (`proveRevoked`).
    function close(Channel calldata channel, State calldata state, Signature calldata sigA, Signature calldata sigB)
        external
    {
        bytes32 channelId = _channelId(channel);
        uint256 packed = _checkCloser(channelId, channel);
        if (state.nonce == 0) revert StaleState(0, 0);
        (uint256 balanceA, uint256 balanceB) = _checkState(channelId, channel, state, sigA, sigB, packed);
        _recordClose(
            channelId, channel, packed, state.nonce, balanceA, balanceB, state.lockedA, state.lockedB, state.locksRoot
        );
    }

    /// @dev A participant starts the challenge period with no signed state: the deposits as they stand,
    /// as nonce 0 (any signed state beats it, and any revocation the closer signed covers it).
    function closeWithoutState(Channel calldata channel) external {
        bytes32 channelId = _channelId(channel);
        uint256 packed = _checkCloser(channelId, channel);
        _recordClose(channelId, channel, packed, 0, (packed >> 116) & _MASK_116, packed & _MASK_116, 0, 0, 0);
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                          DISPUTE                           */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev Replaces the recorded state of a closing channel by a newer doubly-signed one, up to and
    /// including the deadline second. Anyone may submit it (a watchtower, say). The deadline does not
    /// move, and neither does the closer's nonce in the record: a proof that the closer revoked the
    /// state it closed with still applies after any challenge. A state signed as final, submitted by
    /// the participant who did not close, ends the dispute and pays out at once (from anyone else, the
    /// closer included, it is recorded like any other state, so a cheater cannot escape a proof of
    /// revocation by paying out first).
    /// `recorded` is the channel's record as the fingerprint proves it (see `Record`).
    /// Challenge-time rule: the deposits cannot change while closing, and the fingerprint proves them per
    /// side, so the state is held to exactly the rule of `close`: its deposits at most the channel's per
    /// side, and what it does not know of goes back to the side that deposited it.
    function challenge(
        Channel calldata channel,
        Record calldata recorded,
        State calldata state,
        Signature calldata sigA,
        Signature calldata sigB
    ) external {
        bytes32 channelId = _channelId(channel);
        uint256 packed = _checkRecorded(channelId, recorded);
        uint256 status = packed >> 248;
        if (status >= _STATUS_PENALIZED) revert ChannelPenalized(channelId);
        {
            // Scoped: fewer stack slots at once.
            uint256 deadline = packed >> 208 & 0xFFFFFFFFFF;
            if (block.timestamp > deadline) revert ChallengePeriodOver(deadline, block.timestamp);
            uint48 recordedNonce = uint48(packed >> 160);
            if (state.nonce <= recordedNonce) revert StaleState(state.nonce, recordedNonce);
        }
        uint256 funds = recorded.funds;
        (uint256 balanceA, uint256 balanceB) = _checkState(channelId, channel, state, sigA, sigB, funds);
        uint64 salt = _salt();
        // Emitted once for both outcomes (the last check has passed, nothing below can revert): one copy of
        // the event's code keeps the deployment under its gas target.
        emit ChallengeAccepted(
            channelId, state.nonce, balanceA, balanceB, state.lockedA, state.lockedB, state.locksRoot, salt
        );
        if (state.isFinal && msg.sender == (status == _STATUS_CLOSING ? channel.participantB : channel.participantA)) {
            // Only this branch pays out, so only it takes the reentrancy guard (a plain challenge writes
            // one slot and calls nothing).
            _enterGuard();
            delete _channels[channelId];
            emit ChannelSettled(channelId, state.nonce, balanceA, balanceB, true);
            _payout(channelId, channel.asset, channel.participantA, balanceA);
            _payout(channelId, channel.asset, channel.participantB, balanceB);
            /// @solidity memory-safe-assembly
            assembly {
                tstore(_GUARD_SLOT, 0)
            }
            return;
        }
        bytes32 outcomeHash =
            _outcomeHash(balanceA, balanceB, state.lockedA, state.lockedB, state.locksRoot, salt);
        _channels[channelId] = (packed & ~(uint256(0xFFFFFFFFFFFF) << 160 | _MASK_160)) | (uint256(state.nonce) << 160)
            | _fingerprint(outcomeHash, funds, recorded.closerNonce);
    }

    /// @dev Proves that the closer of a closing channel had revoked the state it closed with: `sig` is
    /// the closer's EIP-712 `Revocation(channelId, belowNonce)` and `belowNonce` is above the nonce it
    /// closed with (`recorded.closerNonce`, kept through challenges). Settling then pays the whole channel
    /// (balances and locks alike) to the other participant. Anyone may submit it (the victim, a
    /// watchtower), until the channel is settled; a challenge no longer can.
    function proveRevoked(Channel calldata channel, Record calldata recorded, uint48 belowNonce, Signature calldata sig)
        external
    {
        bytes32 channelId = _channelId(channel);
        uint256 packed = _checkRecorded(channelId, recorded);
        uint256 status = packed >> 248;
        if (status >= _STATUS_PENALIZED) revert ChannelPenalized(channelId);
        uint48 closerNonce = recorded.closerNonce;
        if (belowNonce <= closerNonce) revert NotRevoked(closerNonce, belowNonce);
        address cheater = status == _STATUS_CLOSING ? channel.participantA : channel.participantB;
        _checkSigner(_revocationDigest(channelId, belowNonce), sig, cheater);
        unchecked {
            // Status 2 or 3 becomes 4 or 5: the top byte only.
            _channels[channelId] = packed + (uint256(_STATUS_PENALIZED - _STATUS_CLOSING) << 248);
        }
        emit RevokedStateProven(channelId, cheater, closerNonce, belowNonce);
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                           SETTLE                           */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev After the deadline, pays out the recorded state and resolves its locks. Anyone may call it.
    /// `outcome` is the recorded outcome (from the last `ChannelClosed`/`ChallengeAccepted`), `funds` and
    /// `closerNonce` the rest of the record (from `ChannelClosed`); `locks` is the recorded state's lock list,
    /// packed as `LOCK_SIZE`-byte entries `(uint8 direction, uint40 expiry, uint256 amount, bytes32
    /// hashlock)` in the order they were added, whose `keccak256` is the recorded `locksRoot` (empty for a
    /// zero root). A lock whose secret was revealed (`revealedAt`) at or before its expiry pays its
    /// receiver; any other (expired, revealed late, never revealed, or of an unknown direction) goes back
    /// to its sender. What one direction's locks pay is capped at that side's locked total, so the
    /// payouts always add up to the channel's deposits. If the closer was proven to have closed with a
    /// revoked state, the other participant receives the whole channel and `locks` is ignored.
    function settle(
        Channel calldata channel,
        Outcome calldata outcome,
        uint256 funds,
        uint48 closerNonce,
        bytes calldata locks
    ) external nonReentrant {
        bytes32 channelId = _channelId(channel);
        uint256 packed = _checkFingerprint(channelId, _fingerprint(_outcomeHash(outcome), funds, closerNonce));
        uint256 deadline = packed >> 208 & 0xFFFFFFFFFF;
        if (block.timestamp <= deadline) revert ChallengePeriodActive(deadline, block.timestamp);
        uint256 payoutA;
        uint256 payoutB;
        uint256 status = packed >> 248;
        if (status >= _STATUS_PENALIZED) {
            unchecked {
                // Both deposits fit 116 bits.
                uint256 total = ((funds >> 116) & _MASK_116) + (funds & _MASK_116);
                (payoutA, payoutB) = status == _STATUS_PENALIZED ? (uint256(0), total) : (total, uint256(0));
            }
        } else {
            (payoutA, payoutB) = _resolveLocks(outcome, locks);
        }
        delete _channels[channelId];
        emit ChannelSettled(channelId, uint48(packed >> 160), payoutA, payoutB, false);
        _payout(channelId, channel.asset, channel.participantA, payoutA);
        _payout(channelId, channel.asset, channel.participantB, payoutB);
    }

    /// @dev Sends `msg.sender`'s deferred payouts in `asset` to `to`, with all the gas it needs.
    function claim(address asset, address to) external nonReentrant {
        uint256 amount = owed[msg.sender][asset];
        if (amount == 0) revert NothingToClaim(msg.sender, asset);
        delete owed[msg.sender][asset];
        emit Claimed(msg.sender, asset, to, amount);
        if (!_trySend(asset, to, amount, gasleft())) revert PayoutFailed(to, asset, amount);
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                      SECRET REGISTRY                       */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev Records `secret` as revealed now: `revealedAt[sha256(secret)] = block.timestamp` and
    /// `SecretRevealed`, the first time only. A later reveal of the same secret changes nothing and does not
    /// revert, so racing revealers cannot grief each other. Anyone may reveal. SHA-256 (the precompile at
    /// address 2), so the preimage of a Lightning HTLC unlocks the same hashlock.
    function revealSecret(bytes32 secret) external {
        _revealSecret(secret);
    }

    /// @dev `revealSecret` for each of `secrets`: new ones are recorded, known ones skipped (none reverts).
    function revealSecrets(bytes32[] calldata secrets) external {
        uint256 count = secrets.length;
        for (uint256 i; i < count;) {
            _revealSecret(secrets[i]);
            unchecked {
                // `i < count <= calldata size`: the increment cannot overflow.
                ++i;
            }
        }
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                           VIEWS                            */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev The id of the channel with parameters `channel` on this contract and chain.
    function channelIdOf(Channel calldata channel) external view returns (bytes32) {
        return _channelId(channel);
    }

    /// @dev A channel's slot, unpacked. `status`: 0 none (never opened, or settled), 1 open, 2 closing
    /// (A closed), 3 closing (B closed), 4 and 5 the same with the closer proven to have cheated. An open
    /// channel's deposits and withdrawal counter; a closing one's deadline, recorded nonce and fingerprint
    /// (its deposits and counter are in the record).
    function getChannel(bytes32 channelId)
        external
        view
        returns (
            uint8 status,
            uint256 depositA,
            uint256 depositB,
            uint40 deadline,
            uint48 nonce,
            bytes20 fingerprint,
            uint16 withdrawals
        )
    {
        uint256 packed = _channels[channelId];
        status = uint8(packed >> 248);
        if (status == _STATUS_OPEN) {
            withdrawals = uint16(packed >> 232);
            depositA = (packed >> 116) & _MASK_116;
            depositB = packed & _MASK_116;
        } else if (status >= _STATUS_CLOSING) {
            deadline = uint40(packed >> 208);
            nonce = uint48(packed >> 160);
            fingerprint = bytes20(uint160(packed));
        }
    }

    /// @dev The EIP-712 digest both participants sign for `state` of `channel`.
    function stateDigest(Channel calldata channel, State calldata state) external view returns (bytes32) {
        return _stateDigest(_channelId(channel), state);
    }

    /// @dev The EIP-712 digest a participant signs to revoke every nonce below `belowNonce` of `channel`.
    function revocationDigest(Channel calldata channel, uint48 belowNonce) external view returns (bytes32) {
        return _revocationDigest(_channelId(channel), belowNonce);
    }

    /// @dev The EIP-712 digest both participants sign for `withdrawal` from `channel`.
    function withdrawalDigest(Channel calldata channel, Withdrawal calldata withdrawal)
        external
        view
        returns (bytes32)
    {
        return _withdrawalDigest(_channelId(channel), withdrawal);
    }

    /// @dev The EIP-712 domain separator (name "paychan", version "1", the deployment's chain id), the one
    /// every digest uses.
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _deploymentSeparator;
    }

    /*´:°•.°+.*•´.*:˚.°*.˚•´.°:°•.°•.*•´.*:˚.°*.˚•´.°:°•.°+.*•´.*:*/
    /*                          INTERNAL                          */
    /*.•°:°.´+˚.*°.˚:*.´•*.+°.•°:´*.´•*.•°.•°:°.´:•˚°.*°.˚:*.´+°.•*/

    /// @dev Stores the first reveal of `secret`; no external call but the SHA-256 precompile's staticcall.
    function _revealSecret(bytes32 secret) internal {
        bytes32 hashlock = sha256(abi.encodePacked(secret));
        if (revealedAt[hashlock] != 0) return;
        revealedAt[hashlock] = block.timestamp;
        emit SecretRevealed(hashlock, secret);
    }

    /// @dev solady's `_hashTypedData` with the separator cached at deployment only: solady's also rebuilds
    /// it when the chain id or the address differ from the deployment's (a fork, a delegatecall). Neither
    /// can replay a state here: every signed message holds the channel id, `keccak256(chainid, this,
    /// channel)` computed by the contract at the call, so a message signed on one chain (or for one
    /// contract) names a channel that does not exist on a fork (or elsewhere), whatever the separator.
    /// One immutable instead of three per digest copy: what pays for the bounded ERC-1271 check.
    function _hashTypedData(bytes32 structHash) internal view override returns (bytes32 digest) {
        digest = _deploymentSeparator;
        /// @solidity memory-safe-assembly
        assembly {
            mstore(0x00, 0x1901000000000000) // Store "\x19\x01".
            mstore(0x1a, digest) // Store the domain separator.
            mstore(0x3a, structHash) // Store the struct hash.
            digest := keccak256(0x18, 0x42)
            // Restore the part of the free memory slot that was overwritten.
            mstore(0x3a, 0)
        }
    }

    function _domainNameAndVersion() internal pure override returns (string memory, string memory) {
        return ("paychan", "1");
    }

    /// @dev solady's transient guard (same slot, same `Reentrancy()` error), entered through one shared
    /// function instead of solady's inlined copy per guarded function: every target chain (prague) has
    /// EIP-1153, so solady's storage fallback is dead code here.
    modifier nonReentrant() override {
        _enterGuard();
        _;
        /// @solidity memory-safe-assembly
        assembly {
            tstore(_GUARD_SLOT, 0)
        }
    }

    function _enterGuard() private {
        /// @solidity memory-safe-assembly
        assembly {
            if tload(_GUARD_SLOT) {
                mstore(0x00, 0xab143c06) // `Reentrancy()`.
                revert(0x1c, 0x04)
            }
            tstore(_GUARD_SLOT, address())
        }
    }

    function _channelId(Channel calldata channel) internal view returns (bytes32 channelId) {
        /// @solidity memory-safe-assembly
        assembly {
            let m := mload(0x40)
            mstore(m, chainid())
            mstore(add(m, 0x20), address())
            calldatacopy(add(m, 0x40), channel, 0xa0)
            channelId := keccak256(m, 0xe0)
        }
    }

    function _stateDigest(bytes32 channelId, State calldata state) internal view returns (bytes32) {
        bytes32 structHash;
        bytes32 typehash = STATE_TYPEHASH;
        /// @solidity memory-safe-assembly
        assembly {
            // typehash, channelId and the state's ten words as passed (a dirty word hashes differently).
            let m := mload(0x40)
            mstore(m, typehash)
            mstore(add(m, 0x20), channelId)
            calldatacopy(add(m, 0x40), state, 0x140)
            structHash := keccak256(m, 0x180)
        }
        return _hashTypedData(structHash);
    }

    function _revocationDigest(bytes32 channelId, uint48 belowNonce) internal view returns (bytes32) {
        bytes32 structHash;
        bytes32 typehash = REVOCATION_TYPEHASH;
        /// @solidity memory-safe-assembly
        assembly {
            let m := mload(0x40)
            mstore(m, typehash)
            mstore(add(m, 0x20), channelId)
            mstore(add(m, 0x40), belowNonce)
            structHash := keccak256(m, 0x60)
        }
        return _hashTypedData(structHash);
    }

    function _withdrawalDigest(bytes32 channelId, Withdrawal calldata withdrawal) internal view returns (bytes32) {
        bytes32 structHash;
        bytes32 typehash = WITHDRAWAL_TYPEHASH;
        /// @solidity memory-safe-assembly
        assembly {
            let m := mload(0x40)
            mstore(m, typehash)
            mstore(add(m, 0x20), channelId)
            calldatacopy(add(m, 0x40), withdrawal, 0xc0)
            structHash := keccak256(m, 0x100)
        }
        return _hashTypedData(structHash);
    }

    function _checkWithdrawalSigners(
        bytes32 channelId,
        Channel calldata channel,
        Withdrawal calldata withdrawal,
        Signature calldata sigA,
        Signature calldata sigB
    ) internal view {
        bytes32 digest = _withdrawalDigest(channelId, withdrawal);
        _checkSigner(digest, sigA, channel.participantA);
        _checkSigner(digest, sigB, channel.participantB);
    }

    /// @dev Checks that both participants signed `state`, that it was signed under the channel's
    /// withdrawal counter, that it splits no deposit the channel does not have, that a final state has
    /// no locks, and that its balances and locked totals sum to the deposits it splits. `funds` holds the
    /// channel's counter and deposits as the open slot does. Returns what it pays each side before locks:
    /// its balance plus the side's deposits it does not know of.
    function _checkState(
        bytes32 channelId,
        Channel calldata channel,
        State calldata state,
        Signature calldata sigA,
        Signature calldata sigB,
        uint256 funds
    ) internal view returns (uint256 payoutA, uint256 payoutB) {
        {
            uint256 channelWithdrawals = (funds >> 232) & 0xFFFF;
            if (state.withdrawals != channelWithdrawals) {
                revert WithdrawalCountMismatch(state.withdrawals, uint16(channelWithdrawals));
            }
        }
        uint256 channelDepositA = (funds >> 116) & _MASK_116;
        uint256 channelDepositB = funds & _MASK_116;
        uint256 depositA = state.depositA;
        uint256 depositB = state.depositB;
        if (depositA > channelDepositA || depositB > channelDepositB) {
            revert UnknownDeposit(depositA, depositB, channelDepositA, channelDepositB);
        }
        unchecked {
            // Each deposit is at most its channel deposit (< 2**116): no overflow here. Each part is taken
            // from what is left only once it is known to fit, so no locked total near 2**256 can wrap the
            // sum into looking conserved; a payout is then at most the channel's total.
            uint256 total = depositA + depositB;
            uint256 balanceA = state.balanceA;
            uint256 lockedA = state.lockedA;
            uint256 lockedB = state.lockedB;
            // No part may exceed what is left: `left` never wraps, and the sum is exact.
            uint256 left = total;
            bool conserved = balanceA <= left;
            left -= conserved ? balanceA : 0;
            conserved = conserved && lockedA <= left;
            left -= conserved ? lockedA : 0;
            conserved = conserved && lockedB <= left;
            left -= conserved ? lockedB : 0;
            if (!conserved || state.balanceB != left) {
                revert BalancesNotConserved(balanceA, state.balanceB, total);
            }
            payoutA = balanceA + (channelDepositA - depositA);
            payoutB = left + (channelDepositB - depositB);
        }
        if (state.isFinal && (state.lockedA | state.lockedB | uint256(state.locksRoot)) != 0) {
            revert FinalStateHasLocks(state.lockedA, state.lockedB, state.locksRoot);
        }
        bytes32 digest = _stateDigest(channelId, state);
        _checkSigner(digest, sigA, channel.participantA);
        _checkSigner(digest, sigB, channel.participantB);
    }

    /// @dev Reverts unless `sig` is `expected`'s over `digest`: by `ecrecover` (low `s` only, for every
    /// participant), else, for a participant with code, by its ERC-1271 `isValidSignature`. An EOA's
    /// path is the same instructions as without the fallback: the fallback runs only where the EOA path
    /// would have reverted. Replay protection is the digest's (EIP-712, the channel id, the nonce or the
    /// withdrawal counter), for a wallet as for a key.
    function _checkSigner(bytes32 digest, Signature calldata sig, address expected) internal view {
        bytes32 s = bytes32(uint256(sig.vs) & ~(uint256(1) << 255));
        if (uint256(s) > _HALF_N) revert MalleableSignature(s);
        address recovered = ECDSA.tryRecover(digest, sig.r, sig.vs);
        if (recovered != expected) _checkERC1271(digest, sig, expected, recovered);
    }

    /// @dev The ERC-1271 fallback of `_checkSigner`: reverts unless `expected` has code and accepts `sig`
    /// within `_ERC1271_GAS`. The first line never runs (it is only called with `recovered != expected`):
    /// it makes the function recursive, which keeps the optimizer from inlining a copy of it into every
    /// `_checkSigner` (200 bytes each).
    function _checkERC1271(bytes32 digest, Signature calldata sig, address expected, address recovered) private view {
        if (recovered == expected) return _checkERC1271(digest, sig, expected, address(0));
        if (expected.code.length == 0 || !this.isValidERC1271Signature{gas: _ERC1271_GAS}(expected, digest, sig)) {
            revert InvalidSignature(expected, recovered);
        }
    }

    /// @dev Whether the contract `signer` accepts `sig` for `digest` by ERC-1271 (`isValidSignature`
    /// called with the 65-byte `(r, s, v)` form), through solady's `SignatureCheckerLib`. What
    /// `_checkSigner` calls, with at most `_ERC1271_GAS`, when a participant with code does not recover.
    function isValidERC1271Signature(address signer, bytes32 digest, Signature calldata sig)
        external
        view
        returns (bool)
    {
        return SignatureCheckerLib.isValidERC1271SignatureNow(signer, digest, sig.r, sig.vs);
    }

    /// @dev Checks that the caller may close `channel` and that it is open; returns its slot.
    function _checkCloser(bytes32 channelId, Channel calldata channel) internal view returns (uint256 packed) {
        if (msg.sender != channel.participantA && msg.sender != channel.participantB) {
            revert NotParticipant(channelId, msg.sender);
        }
        packed = _channels[channelId];
        if (packed >> 248 != _STATUS_OPEN) revert ChannelNotOpen(channelId);
    }

    /// @dev Checks that the channel is closing (penalized or not) with this record; returns its slot.
    function _checkRecorded(bytes32 channelId, Record calldata recorded) internal view returns (uint256) {
        uint256 fingerprint;
        /// @solidity memory-safe-assembly
        assembly {
            // The record's three words as passed (a dirty word hashes differently and is refused).
            let m := mload(0x40)
            calldatacopy(m, recorded, 0x60)
            fingerprint := and(keccak256(m, 0x60), _MASK_160)
        }
        return _checkFingerprint(channelId, fingerprint);
    }

    /// @dev Checks that the channel is closing (penalized or not) and that its slot holds `fingerprint`;
    /// returns the slot.
    function _checkFingerprint(bytes32 channelId, uint256 fingerprint) internal view returns (uint256 packed) {
        packed = _channels[channelId];
        if (packed >> 248 < _STATUS_CLOSING) revert ChannelNotClosing(channelId);
        if (packed & _MASK_160 != fingerprint) {
            revert RecordMismatch(bytes20(uint160(packed)), bytes20(uint160(fingerprint)));
        }
    }

    /// @dev Writes the closing slot and emits `ChannelClosed`: status 2 if A closed, 3 if B did.
    function _recordClose(
        bytes32 channelId,
        Channel calldata channel,
        uint256 packed,
        uint48 nonce,
        uint256 balanceA,
        uint256 balanceB,
        uint256 lockedA,
        uint256 lockedB,
        bytes32 locksRoot
    ) internal {
        uint256 deadline;
        unchecked {
            // `block.timestamp` < 2**40 for the next 30,000 years and the period is at most 30 days: the
            // deadline fits its 40 bits of the slot without a mask.
            deadline = block.timestamp + channel.challengePeriod;
        }
        uint64 salt = _salt();
        uint256 status = msg.sender == channel.participantA ? _STATUS_CLOSING : _STATUS_CLOSING + 1;
        // The open slot without its status byte: the withdrawal counter and both deposits.
        uint256 funds = packed & _MASK_248;
        _channels[channelId] = (status << 248) | (uint256(deadline) << 208) | (uint256(nonce) << 160)
            | _fingerprint(_outcomeHash(balanceA, balanceB, lockedA, lockedB, locksRoot, salt), funds, nonce);
        emit ChannelClosed(
            channelId, msg.sender, nonce, balanceA, balanceB, lockedA, lockedB, locksRoot, salt, deadline
        );
    }

    /// @dev The recorded payouts after resolving `locks` (see `settle`); reverts if the list does not hash
    /// to the recorded root.
    function _resolveLocks(Outcome calldata recorded, bytes calldata locks)
        internal
        view
        returns (uint256 payoutA, uint256 payoutB)
    {
        bytes32 locksRoot = recorded.locksRoot;
        bytes32 computed;
        /// @solidity memory-safe-assembly
        assembly {
            if locks.length {
                let m := mload(0x40)
                calldatacopy(m, locks.offset, locks.length)
                computed := keccak256(m, locks.length)
            }
        }
        if (computed != locksRoot) revert LocksMismatch(locksRoot, computed);
        uint256 lockedA = recorded.lockedA;
        uint256 lockedB = recorded.lockedB;
        uint256 toB; // What A's locks pay B, at most `lockedA`.
        uint256 toA; // What B's locks pay A, at most `lockedB`.
        unchecked {
            // `end` is at most the calldata size; every sum is capped by a locked total, and the locked
            // totals and recorded balances sum to the channel's deposits (< 2**117).
            uint256 end = locks.length - locks.length % LOCK_SIZE;
            for (uint256 i; i < end; i += LOCK_SIZE) {
                uint256 head;
                uint256 amount;
                bytes32 hashlock;
                /// @solidity memory-safe-assembly
                assembly {
                    let p := add(locks.offset, i)
                    head := calldataload(p)
                    amount := calldataload(add(p, 6))
                    hashlock := calldataload(add(p, 38))
                }
                uint256 revealed = revealedAt[hashlock];
                if (revealed == 0 || revealed > (head >> 208) & 0xFFFFFFFFFF) continue;
                uint256 direction = head >> 248;
                if (direction == 0) {
                    uint256 room = lockedA - toB;
                    toB += amount < room ? amount : room;
                } else if (direction == 1) {
                    uint256 room = lockedB - toA;
                    toA += amount < room ? amount : room;
                }
            }
            payoutA = recorded.balanceA + (lockedA - toB) + toA;
            payoutB = recorded.balanceB + (lockedB - toA) + toB;
        }
    }

    /// @dev The salt of a record written in this block: 64 bits no one knows before the block is built
    /// (the beacon chain's randomness mixed with the parent block's hash). It only has to be unknown when
    /// the recorded state was signed and submitted, so that a fingerprint collision cannot be searched for
    /// in advance; it is not a source of randomness for anything else.
    function _salt() internal view returns (uint64) {
        unchecked {
            // A transaction's block number is at least 1.
            return uint64(block.prevrandao ^ uint256(blockhash(block.number - 1)));
        }
    }

    /// @dev `keccak256(abi.encode(Outcome(...)))` of these values.
    function _outcomeHash(
        uint256 balanceA,
        uint256 balanceB,
        uint256 lockedA,
        uint256 lockedB,
        bytes32 locksRoot,
        uint64 salt
    ) internal pure returns (bytes32 result) {
        /// @solidity memory-safe-assembly
        assembly {
            let m := mload(0x40)
            mstore(m, balanceA)
            mstore(add(m, 0x20), balanceB)
            mstore(add(m, 0x40), lockedA)
            mstore(add(m, 0x60), lockedB)
            mstore(add(m, 0x80), locksRoot)
            mstore(add(m, 0xa0), salt)
            result := keccak256(m, 0xc0)
        }
    }

    /// @dev `keccak256(abi.encode(outcome))` of the six words as passed (a dirty word hashes differently).
    function _outcomeHash(Outcome calldata outcome) internal pure returns (bytes32 result) {
        /// @solidity memory-safe-assembly
        assembly {
            let m := mload(0x40)
            calldatacopy(m, outcome, 0xc0)
            result := keccak256(m, 0xc0)
        }
    }

    /// @dev The low 160 bits of `keccak256(abi.encode(Record(outcomeHash, funds, closerNonce)))`, the
    /// fingerprint a closing slot holds.
    function _fingerprint(bytes32 outcomeHash, uint256 funds, uint256 closerNonce)
        internal
        pure
        returns (uint256 result)
    {
        /// @solidity memory-safe-assembly
        assembly {
            let m := mload(0x40)
            mstore(m, outcomeHash)
            mstore(add(m, 0x20), funds)
            mstore(add(m, 0x40), closerNonce)
            result := and(keccak256(m, 0x60), _MASK_160)
        }
    }

    function _checkNoValue() internal view returns (uint256) {
        if (msg.value != 0) revert ValueMismatch(msg.value, 0);
        return 0;
    }

    /// @dev Takes a deposit of `amount` from `msg.sender`; returns what was credited.
    function _pullDeposit(address asset, uint256 amount) internal returns (uint256) {
        if (asset == address(0)) {
            if (msg.value != amount) revert ValueMismatch(msg.value, amount);
            return amount;
        }
        if (msg.value != 0) revert ValueMismatch(msg.value, 0);
        uint256 before = SafeTransferLib.balanceOf(asset, address(this));
        if (!SafeTransferLib.trySafeTransferFrom(asset, msg.sender, address(this), amount)) {
            revert TokenTransferFailed(asset, msg.sender, amount);
        }
        uint256 afterwards = SafeTransferLib.balanceOf(asset, address(this));
        // A token whose balance went down is credited nothing rather than wrapping around.
        return afterwards > before ? afterwards - before : 0;
    }

    /// @dev Pushes a payout with at most `PAYOUT_GAS`; if the push fails the amount is credited to `to`
    /// for `claim`.
    function _payout(bytes32 channelId, address asset, address to, uint256 amount) internal {
        if (amount == 0) return;
        uint256 gasLimit;
        /// @solidity memory-safe-assembly
        assembly {
            // `min(gasleft(), PAYOUT_GAS)`, a run-time value: a CALL forwards at most 63/64 of the gas left
            // anyway, so this forwards what the literal would, but shares `claim`'s one copy of the send
            // code (a literal argument gets its own specialized copy: the deployment over its gas target).
            gasLimit := gas()
            if gt(gasLimit, PAYOUT_GAS) { gasLimit := PAYOUT_GAS }
        }
        if (!_trySend(asset, to, amount, gasLimit)) {
            owed[to][asset] += amount;
            emit PayoutDeferred(channelId, to, asset, amount);
        }
    }

    /// @dev Sends `amount` of `asset` (address(0) is ETH) to `to`, forwarding at most `gasLimit`; reports
    /// failure instead of reverting. The one send path of `_payout` (bounded) and `claim` (all gas).
    function _trySend(address asset, address to, uint256 amount, uint256 gasLimit) internal returns (bool) {
        return asset == address(0)
            ? SafeTransferLib.trySafeTransferETH(to, amount, gasLimit)
            : _tryTransferToken(asset, to, amount, gasLimit);
    }

    /// @dev `transfer` forwarding at most `gasLimit`, that reports failure instead of reverting, with
    /// solady's success rule: the call succeeded and returned `true`, or returned nothing from an address
    /// that has code.
    function _tryTransferToken(address token, address to, uint256 amount, uint256 gasLimit)
        internal
        returns (bool success)
    {
        /// @solidity memory-safe-assembly
        assembly {
            mstore(0x14, to)
            mstore(0x34, amount)
            mstore(0x00, 0xa9059cbb000000000000000000000000) // `transfer(address,uint256)`.
            success := call(gasLimit, token, 0, 0x10, 0x44, 0x00, 0x20)
            if iszero(and(eq(mload(0x00), 1), success)) {
                success := lt(or(iszero(extcodesize(token)), returndatasize()), success)
            }
            mstore(0x34, 0) // Restore the part of the free memory pointer that was overwritten.
        }
    }
}
