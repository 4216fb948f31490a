"""The playbook as one document: the model (the union of the kinds' specs), the loader, the cross-step checks, validate, the JSON schema and the drill spec."""
