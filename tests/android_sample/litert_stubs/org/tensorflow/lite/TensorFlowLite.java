package org.tensorflow.lite;

/**
 * Host stand-in for LiteRT's {@code org.tensorflow.lite.TensorFlowLite} (see Interpreter): the
 * version a device reports at check-in, as a name no real runtime has.
 */
public final class TensorFlowLite {
    public static final String HOST_STUB_VERSION = "host-stub";

    private TensorFlowLite() {
    }

    public static String runtimeVersion() {
        return HOST_STUB_VERSION;
    }
}
