package dev.fedge.core;

/** A payload or message that breaks the fedge protocol (the Python side's ProtocolError). */
public class ProtocolException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final String code;

    public ProtocolException(String message, String code) {
        super(message);
        this.code = code;
    }

    /** Machine-readable reason, the same strings protocol/ uses (bad_payload, bad_codec, ...). */
    public String code() {
        return code;
    }
}
