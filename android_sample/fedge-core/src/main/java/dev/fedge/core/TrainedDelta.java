package dev.fedge.core;

/** What a device's local training produced: the clipped weight delta, before it is encoded or masked. */
public final class TrainedDelta {
    public final LocalTrainer.Result result;
    public final float[] delta;
    /** |delta| <= clip norm before clipping (the adaptive-clipping bit). */
    public final boolean belowClip;

    public TrainedDelta(LocalTrainer.Result result, float[] delta, boolean belowClip) {
        this.result = result;
        this.delta = delta;
        this.belowClip = belowClip;
    }

    /** Trains from the global weights and clips the delta to the plan's L2 norm. */
    public static TrainedDelta train(LocalTrainer trainer, byte[] model, Assignment a, UpdateCodec.Decoded global)
            throws Exception {
        LocalTrainer.Result result = trainer.train(model, a.modelSha256, global.values, global.counts, a.plan);
        float[] delta = DeltaMath.delta(result.weights, global.values);
        double norm = DeltaMath.clipL2(delta, a.plan.clipNorm);
        return new TrainedDelta(result, delta, norm <= a.plan.clipNorm);
    }
}
