-- wrk script: POST the body in $BODY_FILE with $CONTENT_TYPE (and $AUTH as Authorization when set).
wrk.method = "POST"
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"
local accept = os.getenv("ACCEPT")
if accept and #accept > 0 then wrk.headers["Accept"] = accept end
local auth = os.getenv("AUTH")
if auth and #auth > 0 then wrk.headers["Authorization"] = auth end
