package dev.fedge.core;

/** What a device's local training produced: the clipped weight delta, before it is encoded or masked. */
public final class TrainedDelta {
    public final LocalTrainer.Result result;
    public final float[] delta;
    /** |delta| <= clip norm before clipping (the adaptive-clipping bit). */
    public final boolean belowClip;
    /** SCAFFOLD: this device's next control variate c_i+ (kept once the upload is acknowledged), else null. */
    public final float[] nextControl;

    public TrainedDelta(LocalTrainer.Result result, float[] delta, boolean belowClip) {
        this(result, delta, belowClip, null);
    }

    public TrainedDelta(LocalTrainer.Result result, float[] delta, boolean belowClip, float[] nextControl) {
        this.result = result;
        this.delta = delta;
        this.belowClip = belowClip;
        this.nextControl = nextControl;
    }

    /** Trains from the global weights and clips the delta to the plan's L2 norm. */
    public static TrainedDelta train(LocalTrainer trainer, byte[] model, Assignment a, UpdateCodec.Decoded global)
            throws Exception {
        return train(trainer, model, a, global, null, null);
    }

    /**
     * With SCAFFOLD ({@code c}, {@code ci} non-null): the step corrected by c - c_i, and the
     * delta is the model delta followed by the control delta (protocol/scaffold.py), clipped together.
     */
    public static TrainedDelta train(LocalTrainer trainer, byte[] model, Assignment a, UpdateCodec.Decoded global,
                                     float[] c, float[] ci) throws Exception {
        boolean scaffold = c != null;
        LocalTrainer.Result result = trainer.train(new TrainJob(model, a.modelSha256, global.values, global.counts,
                a.plan, scaffold ? Scaffold.correction(c, ci) : null));
        float[] delta = DeltaMath.delta(result.weights, global.values);
        float[] next = null;
        if (scaffold) {
            next = Scaffold.nextControl(c, ci, delta, result.steps, a.plan.learningRate, a.plan.sgdMomentum,
                    a.plan.sgdNesterov);
            delta = Scaffold.updateVector(delta, ci, next);
        }
        double norm = DeltaMath.clipL2(delta, a.plan.clipNorm);
        return new TrainedDelta(result, delta, norm <= a.plan.clipNorm, next);
    }
}
