package dev.fedge.sample;

import android.app.Activity;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.widget.Button;
import android.widget.EditText;
import android.widget.LinearLayout;
import android.widget.TextView;
import dev.fedge.android.ExampleStore;
import dev.fedge.android.Fedge;
import dev.fedge.android.ReleasedModel;
import dev.fedge.core.Examples;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

/**
 * Status, settings, and a "run now" button that skips the scheduling constraints for demos.
 * Everything goes through fedge-android's public API ({@link Fedge}), as an app team's would.
 */
public final class MainActivity extends Activity {
    private TextView status;
    private EditText coordinator;
    private EditText population;
    private EditText dpFloor;
    private DrawingPad pad;
    private TextView collected;
    private TextView prediction;
    private final Handler main = new Handler(Looper.getMainLooper());

    /** The example store this app's drawings go to, and its rounds train on. */
    static final String STORE = "drawn-digits";
    static final String DEMO_ASSET = "demo_digits.csv";

    @Override
    protected void onCreate(Bundle savedInstanceState) {
        super.onCreate(savedInstanceState);
        setContentView(R.layout.activity_main);
        status = findViewById(R.id.status);
        coordinator = findViewById(R.id.coordinator);
        population = findViewById(R.id.population);
        coordinator.setText(Fedge.coordinator(this));
        population.setText(Fedge.population(this));
        dpFloor = findViewById(R.id.dp_floor);
        double floor = Fedge.minDpNoise(this);
        dpFloor.setText(floor > 0 ? Double.toString(floor) : "");
        Button runNow = findViewById(R.id.run_now);
        runNow.setOnClickListener(v -> {
            if (!saveSettings()) {
                return;
            }
            runNow.setEnabled(false);
            status.setText("checking in...");
            new Thread(() -> {
                String line;
                try {
                    line = "run now: " + Fedge.runNow(getApplicationContext());
                } catch (Exception e) {
                    line = "run now failed: " + e;
                }
                String shown = line;
                main.post(() -> {
                    runNow.setEnabled(true);
                    status.setText(shown + "\n\n" + Fedge.status(this));
                });
            }, "fedge-run-now").start();
        });
        pad = findViewById(R.id.pad);
        collected = findViewById(R.id.collected);
        Fedge.setExampleStore(this, STORE);
        LinearLayout labels = findViewById(R.id.labels);
        for (int row = 0; row < 2; row++) {
            LinearLayout line = new LinearLayout(this);
            line.setOrientation(LinearLayout.HORIZONTAL);
            for (int digit = 5 * row; digit < 5 * row + 5; digit++) {
                Button label = new Button(this);
                label.setText(Integer.toString(digit));
                label.setTag(digit);
                label.setOnClickListener(v -> store((Integer) v.getTag()));
                line.addView(label, new LinearLayout.LayoutParams(0, LinearLayout.LayoutParams.WRAP_CONTENT, 1f));
            }
            labels.addView(line);
        }
        findViewById(R.id.seed_demo).setOnClickListener(v -> seedDemo());
        prediction = findViewById(R.id.prediction);
        findViewById(R.id.classify).setOnClickListener(v -> classify());
        showCollected();
        Button schedule = findViewById(R.id.schedule);
        schedule.setOnClickListener(v -> {
            if (!saveSettings()) {
                return;
            }
            Fedge.schedule(getApplicationContext());
            status.setText("scheduled: runs when charging, on Wi-Fi and idle\n\n" + Fedge.status(this));
        });
    }

    /** The drawing classified by the model release this phone installed, naming the release. */
    void classify() {
        if (pad.isEmpty()) {
            prediction.setText("draw a digit first");
            return;
        }
        try (ReleasedModel model = ReleasedModel.open(this)) {
            if (model == null) {
                prediction.setText("no model release installed yet: the coordinator releases one with "
                        + "`fedge task release`, and this phone installs it at a check-in on Wi-Fi");
                return;
            }
            prediction.setText("the released model says " + model.classify(pad.features()) + " (release "
                    + model.release.releaseId + ", sequence " + model.release.sequence + ")");
        } catch (java.io.IOException | RuntimeException e) {
            prediction.setText("could not classify: " + e.getMessage());
        }
    }

    /** The drawing, as the model's input, stored with the label the user tapped. */
    void store(int label) {
        if (pad.isEmpty()) {
            collected.setText("draw a digit first");
            return;
        }
        try (ExampleStore store = Fedge.examples(this, STORE)) {
            store.add(pad.features(), label);
        }
        pad.clear();
        showCollected();
    }

    /** The bundled demo seed (300 of scikit-learn's digits, assets/demo_digits.csv) into the store. */
    void seedDemo() {
        try (BufferedReader in = new BufferedReader(new InputStreamReader(getAssets().open(DEMO_ASSET),
                StandardCharsets.UTF_8)); ExampleStore store = Fedge.examples(this, STORE)) {
            Examples demo = Examples.readCsv(in, DEMO_ASSET);
            for (int i = 0; i < demo.y.length; i++) {
                store.add(demo.x[i], demo.y[i]);
            }
        } catch (IOException e) {
            collected.setText("demo examples not added: " + e.getMessage());
            return;
        }
        showCollected();
    }

    private void showCollected() {
        try (ExampleStore store = Fedge.examples(this, STORE)) {
            int n = store.count();
            collected.setText(n + (n == 1 ? " example" : " examples") + " drawn on this phone (rounds train on them)");
        }
    }

    @Override
    protected void onResume() {
        super.onResume();
        status.setText(Fedge.status(this));
    }

    /** The settings on screen, through the public API; false (and why, on screen) when refused. */
    private boolean saveSettings() {
        try {
            Fedge.configure(this, coordinator.getText().toString().trim(), population.getText().toString().trim());
        } catch (IllegalArgumentException e) {
            status.setText("settings not saved: " + e.getMessage());
            return false;
        }
        double floor;
        try {
            floor = Double.parseDouble(dpFloor.getText().toString().trim());
        } catch (NumberFormatException e) {
            floor = 0.0;
        }
        Fedge.setMinDpNoise(this, floor);
        return true;
    }
}
