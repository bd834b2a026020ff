"""The names of the chaincode events, in one place: every state change emits one."""

DATASET_REGISTERED = "DatasetRegistered"
RECORDS_REGISTERED = "RecordsRegistered"
RECORD_DELETED = "RecordDeleted"

CONSENT_GRANTED = "ConsentGranted"
CONSENT_REVOKED = "ConsentRevoked"
USAGE_RECORDED = "UsageRecorded"

METHOD_PUBLISHED = "MethodPublished"
METHOD_CHANGED = "MethodChanged"

RULES_SET = "RulesSet"
BUDGET_GRANTED = "BudgetGranted"

COMPUTATION_REQUESTED = "ComputationRequested"
COMPUTATION_APPROVED = "ComputationApproved"
COMPUTATION_DENIED = "ComputationDenied"
COMPUTATION_CLAIMED = "ComputationClaimed"
COMPUTATION_PROGRESS = "ComputationProgress"
COMPUTATION_COMPLETED = "ComputationCompleted"
COMPUTATION_FAILED = "ComputationFailed"
