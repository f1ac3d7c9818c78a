"""The bundled reference agent: the protocol's server side with transparent, rule-based scoring."""
