"""The mediated-transfer lifecycle as pure state machines (modelled on Raiden's
``transfer/mediated_transfer/{initiator,mediator,target}.py``): ``initiator`` (the payer), ``mediator`` (an
intermediary), ``target`` (the payee), fed by ``events`` and returning actions; ``state`` holds the shared data
and the refusal errors, ``book`` dispatches one node's events to its payments. No sockets, no chain, no store:
plain data in, plain data out. docs/network.md describes the lifecycle and the retry rule.
"""
