package dev.fedge.sample;

import android.content.Context;
import android.graphics.Canvas;
import android.graphics.Color;
import android.graphics.Paint;
import android.util.AttributeSet;
import android.view.MotionEvent;
import android.view.View;
import java.util.ArrayList;
import java.util.List;

/** A square where the user draws a digit with a finger; its strokes become the model's input. */
public final class DrawingPad extends View {
    private final List<float[]> strokes = new ArrayList<>();
    private final List<Float> current = new ArrayList<>();
    private final Paint pen = new Paint(Paint.ANTI_ALIAS_FLAG);

    public DrawingPad(Context context, AttributeSet attrs) {
        super(context, attrs);
        pen.setColor(Color.BLACK);
        pen.setStrokeCap(Paint.Cap.ROUND);
        setBackgroundColor(Color.WHITE);
    }

    @Override
    protected void onMeasure(int widthSpec, int heightSpec) {
        int size = MeasureSpec.getSize(widthSpec);
        setMeasuredDimension(size, size); // square, like the digits' 8x8 grid
    }

    @Override
    public boolean onTouchEvent(MotionEvent event) {
        switch (event.getActionMasked()) {
            case MotionEvent.ACTION_DOWN:
                getParent().requestDisallowInterceptTouchEvent(true); // the screen scrolls; the pad draws
                current.clear();
                addPoint(event.getX(), event.getY());
                return true;
            case MotionEvent.ACTION_MOVE:
                for (int h = 0; h < event.getHistorySize(); h++) {
                    addPoint(event.getHistoricalX(h), event.getHistoricalY(h));
                }
                addPoint(event.getX(), event.getY());
                return true;
            case MotionEvent.ACTION_UP:
                addPoint(event.getX(), event.getY());
                endStroke();
                return true;
            default:
                return super.onTouchEvent(event);
        }
    }

    void addPoint(float x, float y) {
        current.add(x);
        current.add(y);
        invalidate();
    }

    void endStroke() {
        float[] stroke = new float[current.size()];
        for (int i = 0; i < stroke.length; i++) {
            stroke[i] = current.get(i);
        }
        if (stroke.length > 0) {
            strokes.add(stroke);
        }
        current.clear();
        invalidate();
    }

    boolean isEmpty() {
        return strokes.isEmpty() && current.isEmpty();
    }

    void clear() {
        strokes.clear();
        current.clear();
        invalidate();
    }

    /** The drawing as the digits model's 64 inputs (DigitFeatures). */
    float[] features() {
        return DigitFeatures.fromStrokes(strokes, getWidth() > 0 ? getWidth() : 1, getHeight() > 0 ? getHeight() : 1);
    }

    @Override
    protected void onDraw(Canvas canvas) {
        super.onDraw(canvas);
        pen.setStrokeWidth(getWidth() * (float) (2 * DigitFeatures.PEN_RADIUS / DigitFeatures.GRID));
        for (float[] stroke : strokes) {
            drawStroke(canvas, stroke);
        }
        float[] open = new float[current.size()];
        for (int i = 0; i < open.length; i++) {
            open[i] = current.get(i);
        }
        drawStroke(canvas, open);
    }

    private void drawStroke(Canvas canvas, float[] s) {
        for (int p = 0; p + 3 < s.length; p += 2) {
            canvas.drawLine(s[p], s[p + 1], s[p + 2], s[p + 3], pen);
        }
        if (s.length == 2) {
            canvas.drawPoint(s[0], s[1], pen);
        }
    }
}
