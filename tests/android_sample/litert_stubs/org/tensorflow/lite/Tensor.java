package org.tensorflow.lite;

/** Compile-only stand-in for LiteRT's {@code org.tensorflow.lite.Tensor} (see Interpreter). */
public interface Tensor {
    int[] shape();

    int numElements();
}
