"""The example project: one chat endpoint whose conversations expire after 30 idle seconds."""
