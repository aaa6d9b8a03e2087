package dev.fedge.core;

import java.util.Random;

/**
 * The draws u ~ U[0, 1) of stochastic rounding, one per grid cell in order. Production code
 * uses a {@link Random}; tests replay the draws recorded in protocol/golden/codec.json.
 */
public interface Uniforms {
    float next();

    static Uniforms of(Random random) {
        return random::nextFloat;
    }

    static Uniforms replay(float[] draws) {
        return new Uniforms() {
            private int position;

            @Override
            public float next() {
                if (position >= draws.length) {
                    throw new IllegalStateException("ran out of recorded draws at " + position);
                }
                return draws[position++];
            }
        };
    }
}
