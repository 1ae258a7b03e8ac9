"""The platforms' published GraphQL schemas as SDL (data files; see each header)."""
