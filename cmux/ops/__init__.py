"""The operations both front ends call: cmux/cli (click, for a person) and
cmux/agenttools (argparse, for agents).

Each function does one verb and returns data or raises CmuxError; it never
prints. The front ends parse their arguments, establish who is calling
(cmux/identity.py: ``caller``, ``require_person``, exactly where they did),
call one of these and print the answer. What a verified caller may do with
an operation (``agents.decide``) is checked here, so it holds for every front
end that passes a caller. Modules import lazily inside their functions:
``tools/mailbox send`` goes through ops/mail.py and must stay quick.
"""
