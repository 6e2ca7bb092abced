"""The SageMaker face: the hosting control plane (JSON 1.1, `X-Amz-Target: SageMaker.<Op>`) and the runtime
(`/endpoints/{name}/invocations`), both SigV4-signed with access keys modelport issues."""
