-- [twiliod/webd] One shape for route conditions and actions (proto::routing).
-- Two shapes used to be stored: the web UI/API wrote a ring as
-- {"device_ids": [...]} and a caller condition as {"match": ..., "list": ...};
-- rows inserted for twiliod used {"devices": [...]} and {"list"|"numbers"|"prefix"}.
-- Both become the typed shape; rows that are not JSON are left for twiliod to
-- report as invalid.

-- Caller ID, API shape: `match` says it all; `list` repeated it.
UPDATE routes SET condition_data = json_remove(condition_data, '$.list')
WHERE condition_type = 'callerid' AND json_valid(condition_data)
  AND json_type(condition_data, '$.match') IS NOT NULL;

-- Caller ID, twiliod shape: the first of list, numbers, prefix decided.
UPDATE routes SET condition_data = json_set(
        json_remove(condition_data, '$.list', '$.numbers', '$.prefix'),
        '$.match', json_extract(condition_data, '$.list'))
WHERE condition_type = 'callerid' AND json_valid(condition_data)
  AND json_type(condition_data, '$.match') IS NULL
  AND json_type(condition_data, '$.list') = 'text';

UPDATE routes SET condition_data = json_set(
        json_remove(condition_data, '$.prefix'), '$.match', 'numbers')
WHERE condition_type = 'callerid' AND json_valid(condition_data)
  AND json_type(condition_data, '$.match') IS NULL
  AND json_type(condition_data, '$.numbers') = 'array';

UPDATE routes SET condition_data = json_set(condition_data, '$.match', 'prefix')
WHERE condition_type = 'callerid' AND json_valid(condition_data)
  AND json_type(condition_data, '$.match') IS NULL
  AND json_type(condition_data, '$.prefix') = 'text';

-- Time: the singular spellings twiliod also accepted; days/start/end only
-- mean something for a custom range.
UPDATE routes SET condition_data = json_set(condition_data, '$.when',
        CASE json_extract(condition_data, '$.when')
            WHEN 'weekend' THEN 'weekends' ELSE 'holidays' END)
WHERE condition_type = 'time' AND json_valid(condition_data)
  AND json_extract(condition_data, '$.when') IN ('weekend', 'holiday');

UPDATE routes SET condition_data = json_remove(condition_data, '$.days', '$.start', '$.end')
WHERE condition_type = 'time' AND json_valid(condition_data)
  AND json_extract(condition_data, '$.when') IS NOT 'custom';

UPDATE routes SET condition_data = '{}'
WHERE condition_type = 'default' AND condition_data IS NOT '{}';

-- Ring, twiliod shape: `devices` is `device_ids`.
UPDATE routes SET action_data = json_remove(
        json_set(action_data, '$.device_ids', json_extract(action_data, '$.devices')),
        '$.devices')
WHERE action_type = 'ring' AND json_valid(action_data)
  AND json_type(action_data, '$.devices') = 'array'
  AND json_type(action_data, '$.device_ids') IS NULL;

-- A ring without devices rang the called number's owner: now said outright.
UPDATE routes SET action_data = json_set(action_data, '$.device_ids', json('[]'), '$.owner', json('true'))
WHERE action_type = 'ring' AND json_valid(action_data)
  AND IFNULL(json_array_length(action_data, '$.device_ids'), 0) = 0
  AND json_type(action_data, '$.owner') IS NOT 'true';

-- Empty optional texts meant "not set"; any reject reason but `rejected`
-- meant busy.
UPDATE routes SET action_data = json_remove(action_data, '$.greeting')
WHERE action_type = 'voicemail' AND json_valid(action_data)
  AND trim(IFNULL(json_extract(action_data, '$.greeting'), 'x')) = '';

UPDATE routes SET action_data = json_remove(action_data, '$.audio')
WHERE action_type = 'announcement' AND json_valid(action_data)
  AND trim(IFNULL(json_extract(action_data, '$.audio'), 'x')) = '';

UPDATE routes SET action_data = json_set(action_data, '$.reason', 'busy')
WHERE action_type = 'reject' AND json_valid(action_data)
  AND IFNULL(json_extract(action_data, '$.reason'), '') NOT IN ('busy', 'rejected');
