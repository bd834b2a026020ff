"""The FlowBlock chaincode (consent, records, catalogue, computation tokens, privacy
budget) and the chaincode-as-a-service runtime that serves it.
"""
