-- Tool use (MCP and internal tools).
-- The tool calls and results of a run, as JSON: a list of steps, each at the byte
-- offset of the run's text where the model made the calls. A message's tool history
-- is the steps of its runs, shifted by each run's prefix_len.
ALTER TABLE runs ADD COLUMN tool_steps TEXT;
-- The tools a conversation offers its model, as a JSON list of tool server ids and
-- tool names; NULL offers none.
ALTER TABLE conversations ADD COLUMN tools TEXT;
