"""DynamoDB and Secrets Manager access. The only code that touches boto3 tables and secrets."""
