"""JupyterHub for FlowBlock: configuration, authenticator and roles, identity issuing,
services and the Voila dashboards.
"""
