package dev.fedge.core;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.zip.GZIPInputStream;

/**
 * The device side of the /v1 protocol over HttpURLConnection (available on every Android
 * version and the JDK). Network errors, 429 and 5xx are retried with {@link Backoff}; a
 * retried upload sends the same bytes, which the coordinator counts once.
 */
public final class FedgeClient {
    /** A 4xx answer: the request was wrong or too late; retrying will not help. */
    public static final class ApiException extends RuntimeException {
        private static final long serialVersionUID = 1L;
        public final int status;
        public final String code;

        ApiException(int status, String code, String message) {
            super(status + " " + code + ": " + message);
            this.status = status;
            this.code = code;
        }
    }

    private static final class Response {
        final int status;
        final byte[] body;
        final long wireBytes; // what the body took on the wire (less than its length when gzip-encoded)

        Response(int status, byte[] body, long wireBytes) {
            this.status = status;
            this.body = body;
            this.wireBytes = wireBytes;
        }

        String text() {
            return new String(body, StandardCharsets.UTF_8);
        }
    }

    private static final int STREAM_ABOVE_BYTES = 8 << 20;

    private final String base;
    private final Backoff backoff;
    private final Backoff.Sleeper sleeper;
    private final int attempts;
    private String token;
    private String releaseKey = "";
    private long bytesUp;
    private long bytesDown;

    public FedgeClient(String baseUrl, Backoff backoff, Backoff.Sleeper sleeper, int attempts) {
        this.base = baseUrl.replaceAll("/+$", "");
        this.backoff = backoff;
        this.sleeper = sleeper;
        this.attempts = Math.max(1, attempts);
    }

    public String token() {
        return token;
    }

    public void setToken(String token) {
        this.token = token;
    }

    public long bytesUp() {
        return bytesUp;
    }

    public long bytesDown() {
        return bytesDown;
    }

    /** Registers this device in a population; keep the returned token (it is the device's identity). */
    public String register(String population, String label) throws IOException, InterruptedException {
        JsonObject body = new JsonObject();
        body.addProperty("population", population);
        body.addProperty("label", label);
        Response r = request("POST", "/v1/devices/register", json(), body.toString().getBytes(StandardCharsets.UTF_8), 0);
        JsonObject answer = Json.object(r.text());
        token = Json.string(answer, "token");
        releaseKey = Json.string(answer, "release_key", ""); // pinned: it signs the model releases to install
        return token;
    }

    /** The coordinator's release-signing key from registration ("" before registering). */
    public String releaseKey() {
        return releaseKey;
    }

    /** Checks in; with {@code waitS} > 0 the coordinator may hold the request until a round opens. */
    public CheckinResponse checkin(DeviceState state, List<String> cachedModels, double waitS)
            throws IOException, InterruptedException {
        return checkin(state, cachedModels, waitS, null, 0);
    }

    /** A check-in that also says which release channel this device follows and what it installed. */
    public CheckinResponse checkin(DeviceState state, List<String> cachedModels, double waitS, String releaseChannel,
                                   long releaseSequence) throws IOException, InterruptedException {
        JsonObject body = new JsonObject();
        if (releaseChannel != null) {
            body.addProperty("release_channel", releaseChannel);
            body.addProperty("release_sequence", releaseSequence);
        }
        body.add("state", state.toJson());
        JsonArray cached = new JsonArray();
        for (String sha : cachedModels) {
            cached.add(sha);
        }
        body.add("cached_models", cached);
        body.addProperty("wait_s", waitS);
        Response r = request("POST", "/v1/checkin", authorized(json()), body.toString().getBytes(StandardCharsets.UTF_8),
                (int) (waitS * 1000));
        return CheckinResponse.fromJson(Json.object(r.text()));
    }

    /**
     * A content-addressed blob: from the cache without any request (a blob named by its
     * SHA-256 never changes), else downloaded; the body must hash to {@code sha256}.
     */
    public byte[] fetchBlob(String url, String sha256, BlobCache cache) throws IOException, InterruptedException {
        byte[] cached = cache.get(sha256);
        if (cached != null && sha256Hex(cached).equals(sha256)) {
            return cached;
        }
        // A task model comes gzip-compressed when asked (its graph compresses 2-4x); the hash is
        // the inflated file's. Asked explicitly, so Android's connection, which would ask and
        // inflate on its own, hands over the encoded body and its length counts as downloaded.
        // An absolute URL is an object store's presigned one: the URL is the capability, and
        // the coordinator's token must not travel to another host.
        Map<String, String> headers = isAbsolute(url) ? new LinkedHashMap<>() : authorized(new LinkedHashMap<>());
        headers.put("Accept-Encoding", "gzip");
        Response r = request("GET", url, headers, null, 0);
        if (!sha256Hex(r.body).equals(sha256)) {
            throw new ProtocolException("blob " + url + " does not hash to " + sha256, "bad_blob");
        }
        cache.put(sha256, r.body);
        return r.body;
    }

    /** Uploads an encoded update for the assignment's round. */
    public JsonObject upload(Assignment assignment, byte[] payload, UploadMeta meta)
            throws IOException, InterruptedException {
        Map<String, String> headers = authorized(new LinkedHashMap<>());
        headers.put("Content-Type", "application/octet-stream");
        headers.put("Fedge-Upload-Token", assignment.uploadToken);
        headers.put("Fedge-Upload", meta.toJson().toString());
        Response r = request("POST", assignment.uploadUrl, headers, payload, 0);
        bytesUp += payload.length;
        return Json.object(r.text());
    }

    /** An evaluation task's report (counts on the holdout) to the assignment's upload URL. */
    public JsonObject reportEvaluation(Assignment assignment, JsonObject report) throws IOException, InterruptedException {
        Map<String, String> headers = authorized(json());
        headers.put("Fedge-Upload-Token", assignment.uploadToken);
        byte[] body = report.toString().getBytes(StandardCharsets.UTF_8);
        Response r = request("POST", assignment.uploadUrl, headers, body, 0);
        bytesUp += body.length;
        return Json.object(r.text());
    }

    /**
     * The round's SecAgg state for this device (GET .../secagg); with {@code since} a state
     * name and {@code waitS} > 0 the coordinator holds the answer until the state moves on.
     */
    public JsonObject secaggView(Assignment assignment, String since, double waitS)
            throws IOException, InterruptedException {
        Map<String, String> headers = authorized(new LinkedHashMap<>());
        headers.put("Fedge-Upload-Token", assignment.uploadToken);
        String query = "?since=" + URLEncoder.encode(since, "UTF-8") + "&wait_s=" + String.format(Locale.ROOT, "%.3f", waitS);
        Response r = request("GET", secaggPath(assignment) + query, headers, null, (int) (waitS * 1000));
        return Json.object(r.text());
    }

    /** A SecAgg phase's message: "keys", "shares" or "reveals". */
    public JsonObject secaggPost(Assignment assignment, String phase, JsonObject message)
            throws IOException, InterruptedException {
        Map<String, String> headers = authorized(json());
        headers.put("Fedge-Upload-Token", assignment.uploadToken);
        byte[] body = message.toString().getBytes(StandardCharsets.UTF_8);
        Response r = request("POST", secaggPath(assignment) + "/" + phase, headers, body, 0);
        bytesUp += body.length;
        return Json.object(r.text());
    }

    private static String secaggPath(Assignment assignment) {
        return "/v1/tasks/" + assignment.taskId + "/rounds/" + assignment.round + "/secagg";
    }

    private static Map<String, String> json() {
        Map<String, String> headers = new LinkedHashMap<>();
        headers.put("Content-Type", "application/json");
        return headers;
    }

    private Map<String, String> authorized(Map<String, String> headers) {
        if (token != null) {
            headers.put("Authorization", "Bearer " + token);
        }
        return headers;
    }

    private Response request(String method, String path, Map<String, String> headers, byte[] body, int extraReadMs)
            throws IOException, InterruptedException {
        IOException lastError = null;
        for (int attempt = 0; attempt < attempts; attempt++) {
            if (attempt > 0) {
                sleeper.sleep((long) (backoff.delaySeconds(attempt - 1) * 1000));
            }
            Response r;
            try {
                r = once(method, path, headers, body, extraReadMs);
            } catch (IOException e) {
                lastError = e;
                continue;
            }
            if (r.status == 429 || r.status >= 500) {
                lastError = new IOException(r.status + " from " + path);
                continue;
            }
            if (r.status >= 400) {
                String code = "http_error";
                String message = r.text();
                try {
                    JsonObject err = Json.child(Json.object(r.text()), "error");
                    code = Json.string(err, "code", code);
                    message = Json.string(err, "message", message);
                } catch (ProtocolException ignored) {
                    // not the coordinator's JSON error shape: keep the raw text
                }
                throw new ApiException(r.status, code, message);
            }
            bytesDown += r.wireBytes;
            return r;
        }
        throw lastError;
    }

    private Response once(String method, String path, Map<String, String> headers, byte[] body, int extraReadMs)
            throws IOException {
        HttpURLConnection conn = (HttpURLConnection) new URL(isAbsolute(path) ? path : base + path).openConnection();
        try {
            conn.setRequestMethod(method);
            conn.setConnectTimeout(10_000);
            conn.setReadTimeout(60_000 + extraReadMs);
            conn.setUseCaches(false);
            for (Map.Entry<String, String> h : headers.entrySet()) {
                conn.setRequestProperty(h.getKey(), h.getValue());
            }
            if (body != null) {
                conn.setDoOutput(true);
                // Streaming mode hides the body of a 401 (the JDK's and Android's connection
                // then have no error stream), so only very large bodies stream.
                if (body.length > STREAM_ABOVE_BYTES) {
                    conn.setFixedLengthStreamingMode(body.length);
                }
                try (OutputStream out = conn.getOutputStream()) {
                    out.write(body);
                }
            }
            int status = conn.getResponseCode();
            InputStream stream = status >= 400 ? conn.getErrorStream() : conn.getInputStream();
            byte[] raw = stream == null ? new byte[0] : readAll(stream);
            if (status < 400 && "gzip".equalsIgnoreCase(conn.getContentEncoding())) {
                return new Response(status, readAll(new GZIPInputStream(new ByteArrayInputStream(raw))), raw.length);
            }
            return new Response(status, raw, raw.length);
        } finally {
            conn.disconnect();
        }
    }

    private static byte[] readAll(InputStream in) throws IOException {
        try (InputStream stream = in) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            byte[] buffer = new byte[16384];
            int n;
            while ((n = stream.read(buffer)) > 0) {
                out.write(buffer, 0, n);
            }
            return out.toByteArray();
        }
    }

    /** A download URL of an object store (presigned), not a path on the coordinator. */
    static boolean isAbsolute(String url) {
        return url.startsWith("https://") || url.startsWith("http://");
    }

    static String sha256Hex(byte[] data) {
        try {
            StringBuilder hex = new StringBuilder();
            for (byte b : MessageDigest.getInstance("SHA-256").digest(data)) {
                hex.append(String.format("%02x", b));
            }
            return hex.toString();
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
