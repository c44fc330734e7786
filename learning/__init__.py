"""The knowledge base: source domains, task specs, meta-trained models and their evaluations."""
