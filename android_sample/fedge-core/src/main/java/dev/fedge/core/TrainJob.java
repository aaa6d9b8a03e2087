package dev.fedge.core;

/**
 * One round of local training, as data (device_runtime.training.TrainJob): the model file and
 * its digest, the global weights (flat, manifest order; {@code counts} per tensor), the plan,
 * and SCAFFOLD's correction c - c_i (null without SCAFFOLD).
 */
public final class TrainJob {
    public final byte[] model;
    public final String modelSha256;
    public final float[] globalWeights;
    public final int[] counts;
    public final Plan plan;
    public final float[] correction;

    public TrainJob(byte[] model, String modelSha256, float[] globalWeights, int[] counts, Plan plan,
                    float[] correction) {
        this.model = model;
        this.modelSha256 = modelSha256;
        this.globalWeights = globalWeights;
        this.counts = counts;
        this.plan = plan;
        this.correction = correction;
    }

    public TrainJob(byte[] model, String modelSha256, float[] globalWeights, int[] counts, Plan plan) {
        this(model, modelSha256, globalWeights, counts, plan, null);
    }
}
