"""JupyterHub for FlowBlock: configuration, authenticator and roles, identity issuing,
services and the Voila dashboards.

It may import the core (the client, identities, configuration); it never imports the
data side (``flowblock.executor``), the network's internals, the stack or the fakes.
"""
