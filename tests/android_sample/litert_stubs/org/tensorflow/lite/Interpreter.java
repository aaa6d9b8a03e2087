package org.tensorflow.lite;

import java.nio.ByteBuffer;
import java.util.Map;

/**
 * Host stand-in for LiteRT's {@code org.tensorflow.lite.Interpreter} (the LiteRT Java API is not
 * served by Maven Central, which is all these machines reach, and its native library does not
 * load on the JVM): the signatures the sample app calls, as LiteRT 1.4 declares them, so the
 * app compiles; every method throws, so no test can pass by running it.
 */
public final class Interpreter implements AutoCloseable {
    /** {@code Interpreter.Options}: the one setting the app uses. */
    public static class Options {
        public Options setNumThreads(int numThreads) {
            throw new UnsupportedOperationException("compile-only LiteRT stub");
        }
    }

    public Interpreter(ByteBuffer byteBuffer, Options options) {
        throw new UnsupportedOperationException("compile-only LiteRT stub");
    }

    public String[] getSignatureKeys() {
        throw new UnsupportedOperationException("compile-only LiteRT stub");
    }

    public String[] getSignatureInputs(String signatureKey) {
        throw new UnsupportedOperationException("compile-only LiteRT stub");
    }

    public String[] getSignatureOutputs(String signatureKey) {
        throw new UnsupportedOperationException("compile-only LiteRT stub");
    }

    public Tensor getInputTensorFromSignature(String inputName, String signatureKey) {
        throw new UnsupportedOperationException("compile-only LiteRT stub");
    }

    public Tensor getOutputTensorFromSignature(String outputName, String signatureKey) {
        throw new UnsupportedOperationException("compile-only LiteRT stub");
    }

    public void runSignature(Map<String, Object> inputs, Map<String, Object> outputs, String signatureKey) {
        throw new UnsupportedOperationException("compile-only LiteRT stub");
    }

    @Override
    public void close() {
    }
}
