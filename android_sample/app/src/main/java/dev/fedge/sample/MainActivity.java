package dev.fedge.sample;

import android.app.Activity;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.widget.Button;
import android.widget.EditText;
import android.widget.TextView;
import dev.fedge.android.Fedge;

/**
 * Status, settings, and a "run now" button that skips the scheduling constraints for demos.
 * Everything goes through fedge-android's public API ({@link Fedge}), as an app team's would.
 */
public final class MainActivity extends Activity {
    private TextView status;
    private EditText coordinator;
    private EditText population;
    private EditText dpFloor;
    private final Handler main = new Handler(Looper.getMainLooper());

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
        Button schedule = findViewById(R.id.schedule);
        schedule.setOnClickListener(v -> {
            if (!saveSettings()) {
                return;
            }
            Fedge.schedule(getApplicationContext());
            status.setText("scheduled: runs when charging, on Wi-Fi and idle\n\n" + Fedge.status(this));
        });
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
