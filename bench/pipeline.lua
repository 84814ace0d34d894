-- wrk script for bench/net.sh: HTTP/1.1 pipelining. Each write carries DEPTH requests (the
-- script argument, default 16: `wrk ... -s pipeline.lua -- 16`); wrk sends the next batch once
-- all DEPTH responses are in, and counts every response as a request.
init = function(args)
    local depth = tonumber(args[1]) or 16
    local batch = {}
    for i = 1, depth do
        batch[i] = wrk.format()
    end
    req = table.concat(batch)
end

request = function()
    return req
end
