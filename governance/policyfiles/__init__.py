"""Policies as code: one policy-file format for export, import and GitOps repositories (docs/policies.md).

`format` is pure (YAML in, checked documents out, every problem by file and line); `plan` compares
documents with the stored policies and applies them through governance.services, all or nothing.
"""
