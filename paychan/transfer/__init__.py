"""The mediated-transfer lifecycle as pure state machines (modelled on Raiden's
``transfer/mediated_transfer/{initiator,mediator,target}.py``): ``initiator`` (the payer), ``mediator`` (an
intermediary), ``target`` (the payee), fed by ``events`` and returning actions; ``state`` holds the shared data,
the offer's wire format and the refusal errors, ``book`` dispatches one node's events to its payments, and
``codec`` writes a machine's state as JSON for a store. No sockets, no chain, no store inside: plain data in,
plain data out. docs/network.md describes the lifecycle and the retry rule.
"""
